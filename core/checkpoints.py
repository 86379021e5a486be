"""Find checkpoints and apply the HF output-directory rules, without importing transformers."""

from __future__ import annotations

import re
from pathlib import Path

from tx.core.errors import ConfigError

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
#: A checkpoint directory is complete once the Trainer has written this file (its last write).
COMPLETE_MARKER = "trainer_state.json"
#: Where checkpoints are written before their atomic rename (core/atomic_checkpoint.py); its
#: content is never a checkpoint to resume from.
PARTIAL_DIR = ".tx-partial"
#: Left in a checkpoint by transformers' own SIGTERM checkpointing while it is being written.
HF_INCOMPLETE_SENTINEL = "checkpoint-is-incomplete.txt"


def is_complete_checkpoint(path: Path) -> bool:
    """tx writes checkpoints atomically, so the name alone would do; the marker checks also
    reject directories written in place by other tools (plain HF scripts, older tx)."""
    return (
        path.is_dir()
        and path.parent.name != PARTIAL_DIR
        and (path / COMPLETE_MARKER).is_file()
        and not (path / HF_INCOMPLETE_SENTINEL).exists()
    )


def checkpoints(output_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first (by step)."""
    if not output_dir.is_dir():
        return []
    found = []
    for child in output_dir.iterdir():
        m = CHECKPOINT_RE.match(child.name)
        if m and is_complete_checkpoint(child):
            found.append((int(m.group(1)), child))
    return [p for _, p in sorted(found)]


def last_checkpoint(output_dir: Path) -> Path | None:
    found = checkpoints(output_dir)
    return found[-1] if found else None


def _is_tx_file(name: str) -> bool:
    return name.startswith("tx-") or name.startswith(".tx")


def user_content(output_dir: Path) -> list[str]:
    """Entries of output_dir that tx did not put there before training (job file, logs)."""
    if not output_dir.is_dir():
        return []
    return sorted(p.name for p in output_dir.iterdir() if not _is_tx_file(p.name))


def check_output_dir(
    output_dir: Path, *, do_train: bool, overwrite: bool, resume_from_checkpoint: str | None
) -> Path | None:
    """The HF example rules. Return the checkpoint to auto-resume from, or None.

    - output_dir must not be a file;
    - when training without --overwrite_output_dir, a non-empty output_dir must hold a
      checkpoint (then training resumes from the newest complete one) or it is an error.
    """
    if output_dir.exists() and not output_dir.is_dir():
        raise ConfigError(
            f"output_dir {str(output_dir)!r} is a file, not a directory",
            hint="pass a directory path to --output_dir",
        )
    if resume_from_checkpoint:
        ckpt = Path(resume_from_checkpoint)
        if not ckpt.exists():
            raise ConfigError(
                f"--resume_from_checkpoint {resume_from_checkpoint!r} does not exist",
                hint="pass a checkpoint-N directory written by a previous run",
            )
        if not is_complete_checkpoint(ckpt):
            why = (f"a save that never finished (in {PARTIAL_DIR})" if ckpt.parent.name == PARTIAL_DIR
                   else f"not a complete checkpoint (no {COMPLETE_MARKER})")
            raise ConfigError(
                f"--resume_from_checkpoint {resume_from_checkpoint!r} is {why}",
                hint="pass a checkpoint-N directory written by a previous run",
            )
    if not do_train or overwrite:
        return None
    last = last_checkpoint(output_dir)
    if last is None and user_content(output_dir):
        raise ConfigError(
            f"output_dir {str(output_dir)!r} already exists and is not empty (no checkpoint to resume)",
            hint="use --overwrite_output_dir to train from scratch there, or choose another --output_dir",
        )
    return last
