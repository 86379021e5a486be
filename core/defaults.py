"""Defaults tx itself adds to every job, below the task's defaults, the config file and the
command line. They depend on this machine, so they are resolved once at `tx run` and written
into the job spec: a job reruns the same (`tx run --from`) wherever it lands."""

from __future__ import annotations

from importlib.util import find_spec
from typing import Any

from tx.core.errors import ConfigError


def tensorboard_installed() -> bool:
    """What transformers' TensorBoard callback can write with (checked without importing)."""
    return any(find_spec(name) is not None for name in ("tensorboard", "tensorboardX"))


def default_report_to() -> str:
    """`tensorboard` when it is installed, else `none` (the HF default logs nowhere)."""
    return "tensorboard" if tensorboard_installed() else "none"


def core_defaults() -> dict[str, Any]:
    """HF arguments tx sets for every task unless the task, a config file or a flag does."""
    return {"report_to": default_report_to()}


#: What HF's parser gives each core default when nobody sets it; the job spec stores these too,
#: because a value tx chose per machine must be readable in the spec even when it is HF's own.
HF_UNSET = {"report_to": "none"}


def with_core_values(values: dict[str, Any]) -> dict[str, Any]:
    """The stored job arguments plus every core default, also where it equals the HF default
    (hfargs stores only values that differ from it)."""
    out = dict(values)
    for key, unset in HF_UNSET.items():
        out.setdefault(key, unset)
    return out


def check_report_to(report_to: Any) -> None:
    """Fail before launch, not in the worker, when `--report_to tensorboard` cannot log."""
    names = [report_to] if isinstance(report_to, str) else list(report_to or [])
    if "tensorboard" in names and not tensorboard_installed():
        raise ConfigError("--report_to tensorboard needs the tensorboard package, which is not installed",
                          hint="pip install tensorboard, or pass --report_to none")
