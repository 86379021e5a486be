"""Atomic checkpoints: a `checkpoint-N` directory is complete, or it does not exist.

The HF Trainer writes `checkpoint-N/` in place, file by file (weights, optimizer, scheduler,
RNG states, trainer_state.json). A kill -9, a full disk or a power cut in the middle leaves a
directory that has the name of a checkpoint but not its content, and the next resume may pick
it. tx's Trainer classes change one thing, in ``_save_checkpoint``:

1. every rank writes what HF would write, unchanged, into ``<output_dir>/.tx-partial/checkpoint-N``
   (HF's code runs as is; only the run directory it is given differs);
2. after a barrier, the saving process fsyncs every file and directory of it, renames it to
   ``<output_dir>/checkpoint-N`` (one atomic rename, same filesystem) and fsyncs ``output_dir``;
   Before the rename it adds ``tx-job-identity.json`` (the job the checkpoint belongs to,
   core/jobidentity.py), so the record and the checkpoint appear together;
3. only then are old checkpoints rotated (``save_total_limit``), each by first renaming it into
   ``.tx-partial`` and deleting it there, so a half-deleted checkpoint never keeps its name.

``best_model_checkpoint`` is kept pointing at the final names. Leftovers of a killed save live
only in ``.tx-partial`` (a name tx's resume rules ignore, see core/checkpoints.py) and are
removed by the next save. No heavy import here: the mixin is combined with the Trainer class
inside the worker (:func:`atomic`).
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import Any

from tx.core.checkpoints import PARTIAL_DIR, checkpoints
from tx.core.errors import TxError
from tx.core.jobidentity import CHECKPOINT_RECORD, write_json

_CLASSES: dict[type, type] = {}


def atomic(trainer_cls: type) -> type:
    """``trainer_cls`` (Trainer, Seq2SeqTrainer or a subclass) with atomic checkpoint saves."""
    if trainer_cls not in _CLASSES:
        _CLASSES[trainer_cls] = type(f"Tx{trainer_cls.__name__}", (AtomicCheckpoints, trainer_cls), {})
    return _CLASSES[trainer_cls]


# -- filesystem steps (small functions, so tests can fault-inject between them) -----------------
def fsync_path(path: Path) -> None:
    """Flush one file or directory to stable storage."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """fsync every file, then every directory bottom-up: the content is on disk before the rename
    makes it visible (a kill -9 alone would not need this; a power cut does)."""
    for dirpath, _dirs, files in os.walk(root, topdown=False):
        for name in files:
            fsync_path(Path(dirpath) / name)
        fsync_path(Path(dirpath))


def publish(staged: Path, final: Path) -> None:
    """Make a fully written checkpoint visible under its final name, durably."""
    fsync_tree(staged)
    replaced = None
    if final.exists():  # the same step saved twice: swap, so one complete version always has the name
        replaced = staged.parent / f"replaced-{final.name}"
        shutil.rmtree(replaced, ignore_errors=True)
        os.replace(final, replaced)
    os.replace(staged, final)
    fsync_path(final.parent)
    if replaced is not None:
        shutil.rmtree(replaced, ignore_errors=True)


def discard(checkpoint: Path, partial_root: Path) -> None:
    """Delete a checkpoint so that it disappears at once: rename it away, then remove it."""
    partial_root.mkdir(exist_ok=True)
    trash = partial_root / f"deleting-{checkpoint.name}"
    shutil.rmtree(trash, ignore_errors=True)
    os.replace(checkpoint, trash)
    fsync_path(checkpoint.parent)
    shutil.rmtree(trash, ignore_errors=True)


def rotate(run_dir: Path, limit: int | None, best: str | None) -> list[Path]:
    """Keep at most ``limit`` complete checkpoints (HF's rule: never the newest nor the best one);
    return the removed ones. Oldest first by modification time like HF, by step when the
    filesystem's times do not tell them apart."""
    if not limit or limit <= 0:
        return []
    from transformers.trainer_utils import sort_checkpoints

    complete = {str(p) for p in checkpoints(run_dir)}
    ordered = [Path(p) for p in sort_checkpoints(str(run_dir), use_mtime=True) if p in complete]
    if len(ordered) <= limit:
        return []
    protected = {ordered[-1]} | ({Path(best)} if best else set())
    budget = len(ordered) - max(limit, len(protected & set(ordered)))
    removed = []
    for path in ordered:
        if budget <= 0:
            break
        if path not in protected:
            discard(path, run_dir / PARTIAL_DIR)
            removed.append(path)
            budget -= 1
    return removed


def is_disk_full(exc: BaseException, where: Path) -> bool:
    """ENOSPC, whichever library raised it: torch and safetensors wrap the OSError in their own
    errors (torch's says only "iostream error"), so the free space is the last word."""
    chain: BaseException | None = exc
    while chain is not None:
        if isinstance(chain, OSError) and chain.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(chain)
        if "No space left on device" in text or "os error 28" in text or "Disk quota exceeded" in text:
            return True
        chain = chain.__cause__ or chain.__context__
    try:
        return shutil.disk_usage(where).free < (1 << 20)
    except OSError:
        return False


class AtomicCheckpoints:
    """Mixin put before the HF Trainer class: see the module docstring."""

    _tx_partial_root: str | None = None
    #: the job record written into each checkpoint (set by tx.core.trainer; None: no record)
    _tx_identity: dict[str, Any] | None = None

    def _get_output_dir(self, trial: Any) -> str:
        run_dir = super()._get_output_dir(trial)  # type: ignore[misc]
        return self._tx_partial_root or run_dir

    def _tx_barrier(self) -> None:
        self.accelerator.wait_for_everyone()  # type: ignore[attr-defined]

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        args, state = self.args, self.state  # type: ignore[attr-defined]
        run_dir = Path(super()._get_output_dir(trial))  # type: ignore[misc]
        partial_root = run_dir / PARTIAL_DIR
        name = f"checkpoint-{state.global_step}"
        staged, final = partial_root / name, run_dir / name

        if args.local_process_index == 0:  # leftovers of a killed save: gone before anyone writes
            shutil.rmtree(partial_root, ignore_errors=True)
        self._tx_barrier()
        self._tx_partial_root = str(partial_root)
        try:
            super()._save_checkpoint(model, trial)  # type: ignore[misc]
        except Exception as exc:
            disk_full = is_disk_full(exc, run_dir)  # before the cleanup frees the space again
            shutil.rmtree(partial_root, ignore_errors=True)  # never leave half a checkpoint behind
            if disk_full:
                last = checkpoints(run_dir)
                raise TxError(
                    f"no space left on the device of {run_dir} while saving {name}; "
                    "the incomplete save was removed",
                    hint="free some space (or pick a larger --output_dir disk, fewer --save_total_limit), then run "
                    "the same command again to resume" + (f" from {last[-1].name}" if last else ""),
                ) from None
            raise
        finally:
            self._tx_partial_root = None

        # HF recorded the best checkpoint under the staging name when it is this one.
        if state.best_model_checkpoint and Path(state.best_model_checkpoint) == staged:
            state.best_model_checkpoint = str(final)
            if args.should_save:
                state.save_to_json(str(staged / "trainer_state.json"))
        self._tx_barrier()  # every rank's files are in `staged`
        if args.should_save:
            if self._tx_identity is not None:  # which job this checkpoint belongs to (core/lifecycle.py)
                write_json(staged / CHECKPOINT_RECORD, self._tx_identity)
            publish(staged, final)
            rotate(run_dir, args.save_total_limit, state.best_model_checkpoint)
            shutil.rmtree(partial_root, ignore_errors=True)
        self._tx_barrier()  # nobody reads or saves again before the checkpoint has its name
