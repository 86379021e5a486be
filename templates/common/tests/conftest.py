"""Test helpers: run the real `tx` command line in a subprocess, offline."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# The built-in default run needs nothing from the network; make sure nothing is fetched.
OFFLINE = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
# The default run's model is tiny: one thread per process is plenty, and on a busy machine
# several spinning threads per process slow training down many times over.
THREADS = {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}


def run_tx(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """`tx ARGS...` with this Python (so the test uses the environment the plugin is installed in)."""
    env = {**os.environ, **OFFLINE, **THREADS}
    return subprocess.run(
        [sys.executable, "-m", "tx.core.cli", *args],
        env=env, capture_output=True, text=True, timeout=timeout,
    )


@pytest.fixture
def tx():
    return run_tx
