"""Fixtures shared by the launcher tests."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

XLA_ENV = ROOT / "scripts" / "xla-env.sh"


@pytest.fixture(scope="session")
def xla_python() -> str:
    """The python of the torch_xla CPU venv from scripts/xla-env.sh (built once, then reused; tx
    installed in it). Tests that need it fail when it cannot be made; they never skip."""
    try:
        done = subprocess.run(["bash", str(XLA_ENV), str(ROOT)], capture_output=True, text=True, timeout=1800)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"scripts/xla-env.sh did not finish in 30 minutes:\n{str(exc.stderr or '')[-3000:]}")
    if done.returncode != 0:
        pytest.fail(f"scripts/xla-env.sh failed (exit {done.returncode}); the xla tests need its torch_xla "
                    f"venv:\n{done.stderr[-3000:]}")
    python = done.stdout.strip().splitlines()[-1]
    assert Path(python).is_file(), done.stdout
    return python
