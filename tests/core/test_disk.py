"""A full disk or an unwritable output directory: one clear line before training when it can be
seen then; a disk that fills up during training fails the save in one line, leaves no half
checkpoint behind, and the same command resumes once there is space again.

Real filesystems: small tmpfs mounts and a read-only bind mount made by the test (it runs as
root and unmounts in teardown). Root writes anywhere regardless of permissions, so the
"permission denied" case runs tx without capabilities (setpriv), as a plain user would.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from tests.conftest import ROOT, assert_one_line_error, run_tx
from tx.core.checkpoints import PARTIAL_DIR, is_complete_checkpoint, last_checkpoint

DATA = ROOT / "plugins" / "summarization" / "data"
PLUGIN_DIR = Path(__file__).resolve().parent
NO_CAPS = ("setpriv", "--bounding-set=-all", "--inh-caps=-all")


def command(output_dir: Path, *extra: str) -> list[str]:
    return ["run", "summarization", "--model_name_or_path", "tx-builtin:t5-tiny-summarization-v1",
            "--train_file", str(DATA / "train.jsonl"), "--do_train", "--max_train_samples", "16",
            "--max_source_length", "32", "--max_target_length", "8", "--per_device_train_batch_size", "4",
            "--max_steps", "6", "--save_strategy", "steps", "--save_steps", "2", "--save_total_limit", "2",
            "--seed", "5", "--report_to", "none", "--disable_tqdm", "true", "--output_dir", str(output_dir), *extra]


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, text=True)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[callable]:
    """``tmpfs(size_mb)`` mounts a fresh tmpfs and returns its path; all unmounted at the end."""
    mounted: list[Path] = []

    def make(size_mb: int) -> Path:
        point = tmp_path / f"tmpfs{len(mounted)}"
        point.mkdir()
        _mount("-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(point))
        mounted.append(point)
        return point

    yield make
    for point in reversed(mounted):
        subprocess.run(["umount", "-l", str(point)], check=False)


def test_read_only_filesystem_fails_before_training(tx, tmp_path: Path, tmpfs) -> None:
    ro = tmpfs(8)
    (ro / "runs").mkdir()
    _mount("-o", "remount,ro", str(ro))
    result = tx(*command(ro / "runs" / "one"))
    assert_one_line_error(result, "output_dir", "is not writable")
    assert "another --output_dir" in result.stderr
    assert not (ro / "runs" / "one").exists()


def test_directory_without_write_permission_fails_before_training(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    result = subprocess.run([*NO_CAPS, sys.executable, "-m", "tx.core.cli", *command(locked / "run")],
                            capture_output=True, text=True, timeout=300)
    assert_one_line_error(result, str(locked / "run"), "is not writable")
    assert list(locked.iterdir()) == []


def test_nearly_full_disk_fails_before_training(tx, tmpfs) -> None:
    small = tmpfs(20)
    result = tx(*command(small / "run"))
    line = assert_one_line_error(result, "MB free", str(small / "run"))
    assert "free some space" in line
    assert not (small / "run").exists()


@pytest.mark.train
def test_disk_filling_up_during_a_save_leaves_no_half_checkpoint(tmpfs) -> None:
    disk = tmpfs(64)
    out, ballast = disk / "run", disk / "ballast"
    env = {"PYTHONPATH": os.pathsep.join([str(PLUGIN_DIR), os.environ.get("PYTHONPATH", "")])}
    # after step 3 another program leaves 6 MB free: the save at step 4 (13 MB) cannot fit
    first = run_tx("-p", "tx_fault_plugin", *command(out), env={**env, "TX_FAULT_FILL": f"3:{ballast}:6"})
    line = assert_one_line_error(first, "no space left", "checkpoint-4", "the incomplete save was removed")
    assert "run the same command again to resume from checkpoint-2" in line
    assert not (out / PARTIAL_DIR).exists(), "the half-written save is gone"
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2"]
    assert is_complete_checkpoint(out / "checkpoint-2")

    ballast.unlink()  # space again: the same command resumes
    second = run_tx("-p", "tx_fault_plugin", *command(out), env=env)
    assert second.returncode == 0, second.stderr
    assert f"resuming from {out / 'checkpoint-2'}" in second.stdout + second.stderr
    assert last_checkpoint(out) == out / "checkpoint-6"
    assert (out / "model.safetensors").is_file()
