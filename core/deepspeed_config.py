"""`--deepspeed`: a DeepSpeed config file or a bundled preset, checked against the Trainer
arguments before anything launches.

Presets (``zero1``, ``zero2``, ``zero3``, ``zero2-offload``, ``zero3-offload``) ship in
``tx/launchers/deepspeed_presets``; every batch, accumulation, clipping, precision and optimizer
value in them is ``"auto"``, which transformers fills from the Trainer arguments, so the two can
never disagree. A preset name is replaced by the preset's path in the job file.

A user's own config may set those values. transformers only notices a contradiction once the
model is loaded, in every process; tx names it before launch (:func:`mismatches`).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any, Callable, Mapping

from tx.core.errors import ConfigError

PRESETS = ("zero1", "zero2", "zero3", "zero2-offload", "zero3-offload")
#: the config of `--launcher deepspeed` without --deepspeed (docs/launchers.md says why this one)
DEFAULT_PRESET = "zero2"
INSTALL_HINT = "tx-train depends on it but this environment lacks it; install it with: pip install deepspeed"


def preset_dir() -> Path:
    """Where the presets are installed: package data of tx.launchers (its __init__ is empty)."""
    import tx.launchers

    return Path(tx.launchers.__file__).resolve().parent / "deepspeed_presets"


def preset_path(name: str) -> Path:
    return preset_dir() / f"{name}.json"


def deepspeed_missing() -> str | None:
    """Why DeepSpeed cannot be used here, or None. Cheap: no import."""
    if importlib.util.find_spec("deepspeed") is None:
        return "the deepspeed package is not installed"
    return None


def resolve(value: Any) -> Any:
    """The ``--deepspeed`` value as transformers needs it: a preset name becomes its file path.

    A path must exist; anything else (a dict given through Python) is passed on unchanged.
    """
    if not isinstance(value, str) or not value:
        return value
    if value in PRESETS:
        path = preset_path(value)
        if not path.is_file():
            raise ConfigError(f"the DeepSpeed preset {value!r} is missing from this tx installation ({path})",
                              hint="reinstall tx-train")
        value = str(path)
    elif not Path(value).expanduser().is_file():
        raise ConfigError(f"--deepspeed {value!r} is neither a file nor a preset",
                          hint=f"give a DeepSpeed JSON config or one of {', '.join(PRESETS)}")
    reason = deepspeed_missing()
    if reason:
        raise ConfigError(f"--deepspeed needs DeepSpeed, but {reason}", hint=INSTALL_HINT)
    return value


def load(path: str | Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).expanduser().read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read the DeepSpeed config {str(path)!r}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"the DeepSpeed config {str(path)!r} is not valid JSON: {exc.msg} "
                          f"(line {exc.lineno}, column {exc.colno})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"the DeepSpeed config {str(path)!r} is not a JSON object")
    return data


_MISSING = object()


def _get(config: Mapping[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node


# DeepSpeed key -> (Trainer flag(s) as shown to the user, value from the TrainingArguments)
_PAIRS: tuple[tuple[str, str, Callable[[Any], Any]], ...] = (
    ("train_micro_batch_size_per_gpu", "--per_device_train_batch_size", lambda a: a.per_device_train_batch_size),
    ("gradient_accumulation_steps", "--gradient_accumulation_steps", lambda a: a.gradient_accumulation_steps),
    ("gradient_clipping", "--max_grad_norm", lambda a: a.max_grad_norm),
    ("optimizer.params.lr", "--learning_rate", lambda a: a.learning_rate),
    ("optimizer.params.betas", "--adam_beta1/--adam_beta2", lambda a: [a.adam_beta1, a.adam_beta2]),
    ("optimizer.params.eps", "--adam_epsilon", lambda a: a.adam_epsilon),
    ("optimizer.params.weight_decay", "--weight_decay", lambda a: a.weight_decay),
    ("scheduler.params.warmup_max_lr", "--learning_rate", lambda a: a.learning_rate),
    ("fp16.enabled", "--fp16", lambda a: bool(a.fp16 or a.fp16_full_eval)),
    ("bf16.enabled", "--bf16", lambda a: bool(a.bf16 or a.bf16_full_eval)),
)


def _same(ds_value: Any, trainer_value: Any) -> bool:
    if isinstance(ds_value, (list, tuple)) and isinstance(trainer_value, (list, tuple)):
        return len(ds_value) == len(trainer_value) and all(_same(a, b) for a, b in zip(ds_value, trainer_value))
    if isinstance(ds_value, bool) or isinstance(trainer_value, bool):
        return bool(ds_value) == bool(trainer_value)
    if isinstance(ds_value, (int, float)) and isinstance(trainer_value, (int, float)):
        return abs(float(ds_value) - float(trainer_value)) <= 1e-12 * max(1.0, abs(float(trainer_value)))
    return ds_value == trainer_value


def mismatches(config: Mapping[str, Any], training: Any, world_size: int | None) -> list[str]:
    """Pure: every value the DeepSpeed ``config`` sets (not ``"auto"``) that contradicts the
    Trainer arguments ``training``, as "DS key=value vs --flag value" phrases."""
    out = []
    for key, flag, trainer_value in _PAIRS:
        value = _get(config, key)
        if value is _MISSING or value == "auto":
            continue
        mine = trainer_value(training)
        if not _same(value, mine):
            out.append(f"{key}={json.dumps(value)} but {flag} is {_show(mine)}")
    total = _get(config, "train_batch_size")
    if total is not _MISSING and total != "auto" and world_size:
        expected = world_size * training.per_device_train_batch_size * training.gradient_accumulation_steps
        if total != expected:
            out.append(
                f"train_batch_size={total} but {world_size} processes x --per_device_train_batch_size "
                f"{training.per_device_train_batch_size} x --gradient_accumulation_steps "
                f"{training.gradient_accumulation_steps} is {expected}"
            )
    return out


def _show(value: Any) -> str:
    if isinstance(value, list):
        return "/".join(str(v) for v in value)
    return str(value).lower() if isinstance(value, bool) else str(value)


def check(training: Any, world_size: int | None) -> None:
    """Before launch: a user DeepSpeed config must agree with the Trainer arguments."""
    path = getattr(training, "deepspeed", None)
    if not isinstance(path, str) or not path:
        return
    problems = mismatches(load(path), training, world_size)
    if problems:
        raise ConfigError(
            f"the DeepSpeed config {path} contradicts the Trainer arguments: " + "; ".join(problems),
            hint='set those keys to "auto" in the config (they are then taken from the Trainer arguments) '
                 "or make the two agree",
        )
