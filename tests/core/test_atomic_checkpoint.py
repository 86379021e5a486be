"""The pieces of atomic checkpointing and the resume rules, on plain directories (fast).
The end-to-end proof with real kills is tests/core/test_crash_consistency.py."""

from __future__ import annotations

import os
from pathlib import Path

from tx.core.atomic_checkpoint import publish, rotate
from tx.core.checkpoints import HF_INCOMPLETE_SENTINEL, PARTIAL_DIR, check_output_dir, last_checkpoint


def checkpoint(root: Path, step: int, mtime: float | None = None) -> Path:
    path = root / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "trainer_state.json").write_text(f'{{"global_step": {step}}}')
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def test_resume_ignores_unfinished_saves(tmp_path: Path) -> None:
    (tmp_path / "tx-job.yaml").write_text("task: summarization\n")
    checkpoint(tmp_path / PARTIAL_DIR, 4)  # complete-looking, but never renamed
    assert last_checkpoint(tmp_path) is None
    # only tx's own files: training starts from scratch, no "not empty" error
    assert check_output_dir(tmp_path, do_train=True, overwrite=False, resume_from_checkpoint=None) is None

    checkpoint(tmp_path, 2)
    jit = checkpoint(tmp_path, 6)
    (jit / HF_INCOMPLETE_SENTINEL).write_text("in progress")  # transformers' own SIGTERM save, cut short
    (tmp_path / "checkpoint-8").mkdir()  # written in place by another tool, no trainer_state.json
    assert last_checkpoint(tmp_path) == tmp_path / "checkpoint-2"


def test_publish_renames_whole_and_replaces_an_older_copy(tmp_path: Path) -> None:
    staged = checkpoint(tmp_path / PARTIAL_DIR, 3)
    (staged / "model.safetensors").write_bytes(b"new")
    old = checkpoint(tmp_path, 3)
    (old / "model.safetensors").write_bytes(b"old")
    publish(staged, tmp_path / "checkpoint-3")
    assert (tmp_path / "checkpoint-3" / "model.safetensors").read_bytes() == b"new"
    assert not staged.exists()
    assert not [p for p in (tmp_path / PARTIAL_DIR).iterdir()]


def test_rotation_keeps_the_newest_and_the_best(tmp_path: Path) -> None:
    for i, step in enumerate((2, 4, 6, 8)):
        checkpoint(tmp_path, step, mtime=1_000_000 + 10 * i)
    removed = rotate(tmp_path, 2, best=str(tmp_path / "checkpoint-2"))
    assert [p.name for p in removed] == ["checkpoint-4", "checkpoint-6"]
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-8"]
    assert not list((tmp_path / PARTIAL_DIR).iterdir())  # deleted after being renamed away
    assert rotate(tmp_path, None, best=None) == []
