"""A non-editable wheel install works: the tx.* namespace mapping, package data, entry points."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.conftest import ROOT

LIGHT_DEPS = ["typer>=0.12", "pluggy>=1.5", "pyyaml>=6", "filelock>=3.12"]


@pytest.mark.wheel
def test_wheel_installs_and_lists(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
                    "-w", str(dist), "-q"], check=True, timeout=600)
    wheels = list(dist.glob("tx_train-*.whl"))
    assert len(wheels) == 1

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    # the wheel alone (its heavy deps are not needed for `tx list`), then the light deps
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", str(wheels[0])], check=True, timeout=600)
    subprocess.run([str(py), "-m", "pip", "install", "-q", *LIGHT_DEPS], check=True, timeout=600)

    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    assert (site / "tx" / "core" / "cli.py").is_file()
    assert not (site / "core").exists() and not (site / "plugins").exists() and not (site / "launchers").exists()
    assert (site / "tx" / "plugins" / "summarization" / "data" / "train.jsonl").is_file()
    assert (site / "tx" / "plugins" / "summarization" / "metrics" / "rouge" / "rouge.py").is_file()

    where = subprocess.run([str(py), "-c", "import tx.core; print(tx.core.__file__)"],
                           capture_output=True, text=True, check=True, cwd=tmp_path).stdout.strip()
    assert where.startswith(str(site))

    result = subprocess.run([str(env_dir / "bin" / "tx"), "list"], capture_output=True, text=True, cwd=tmp_path,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "summarization" in result.stdout and "local" in result.stdout and "tx-train" in result.stdout
