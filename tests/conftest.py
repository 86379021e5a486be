"""Shared fixtures: a hermetic, offline environment and a way to run the real `tx` CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY_MODULES = ("torch", "transformers", "datasets", "deepspeed", "docker", "evaluate", "accelerate")


@pytest.fixture(scope="session", autouse=True)
def offline_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Nothing may load from the Hub; tx's cache (built-in tiny models) is per test session."""
    base = tmp_path_factory.mktemp("env")
    env = {
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "TX_CACHE_HOME": str(base / "tx-cache"),
        "HF_HOME": str(base / "hf-home"),
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONUNBUFFERED": "1",
        # Tiny models gain nothing from a second thread, and OpenMP threads spinning on a busy
        # 2-core machine slowed steps ~15x when measured here; one thread keeps tests steady.
        "OMP_NUM_THREADS": "1",
    }
    os.environ.update(env)
    os.environ.pop("TX_DISABLE_PLUGIN_AUTOLOAD", None)
    os.environ.pop("TX_PLUGINS", None)
    return env


def run_tx(*args: str, cwd: Path | str | None = None, env: dict[str, str] | None = None,
           timeout: float = 900, input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a subprocess (`python -m tx.core.cli ...`), capturing output."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "tx.core.cli", *args],
        cwd=str(cwd) if cwd else None,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
    )


@pytest.fixture
def tx():
    """`tx(*args, cwd=..., env=...)` -> CompletedProcess of the real CLI."""
    return run_tx


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Non-zero exit, no traceback, and one `tx: error:` line mentioning every needle."""
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("tx: error:")]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


SMALL_SUMMARIZATION = (
    "--max_train_samples", "64", "--max_eval_samples", "16", "--max_predict_samples", "16",
    "--num_train_epochs", "1", "--per_device_train_batch_size", "16", "--save_strategy", "no",
    "--report_to", "none", "--disable_tqdm", "true",
)


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid``, read from /proc (for tests that check no child is left)."""
    parents: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                stat = Path(f"/proc/{name}/stat").read_text()
            except OSError:
                continue
            parents[int(name)] = int(stat[stat.rfind(")") + 2:].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"
