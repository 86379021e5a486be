"""Test-only tx plugin (load with `tx -p tx_fault_plugin run ...`): kills its own worker with
SIGKILL at a chosen training step and phase, to prove crash consistency; can also slow steps
down and say when training is under way (for signal tests), or fill the disk at a step.

Driven by environment variables, so a rerun of the *same command* without them runs clean:

- ``TX_FAULT=STEP:PHASE`` — SIGKILL when ``state.global_step == STEP`` at PHASE:
  mid-step ``step_begin`` / ``pre_optimizer`` / ``step_end``; ``eval`` (during evaluation);
  inside a checkpoint save ``model_torn`` (weights half written), ``optimizer_torn``,
  ``rng_saved``, ``state_saved`` (trainer_state.json written, before fsync), ``fsynced``
  (just before the rename), ``published`` (renamed, before rotation), ``rotating`` (an old
  checkpoint half deleted).
- ``TX_FAULT_SLEEP=SECONDS`` — sleep at every step begin.
- ``TX_FAULT_READY=PATH`` — write the current step to PATH at each step end.
- ``TX_FAULT_FILL=STEP:PATH:KEEP_MB`` — at STEP, write PATH until only KEEP_MB are left free.

It uses only the public plugin hook (tx_trainer_callbacks) plus wrappers around the save steps.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

from tx.core.hookspecs import hookimpl

SAVE_PHASES = ("model_torn", "optimizer_torn", "rng_saved", "state_saved", "fsynced", "published", "rotating")
STEP_PHASES = ("step_begin", "pre_optimizer", "step_end", "eval")


def _fault() -> tuple[int, str] | None:
    spec = os.environ.get("TX_FAULT")
    if not spec:
        return None
    step, phase = spec.split(":")
    assert phase in SAVE_PHASES + STEP_PHASES, phase
    return int(step), phase


def _die(step: int, phase: str) -> None:
    print(f"tx-fault: SIGKILL at {step}:{phase}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(60)  # never reached


def _tear(path: Path) -> None:
    """Leave the file as a kill in the middle of its write would: cut in half."""
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.truncate(size // 2)


def _patch_saves(state_of: Any, step: int, phase: str) -> None:
    """Wrap the save steps so PHASE of the save at STEP kills the process."""
    import transformers
    from transformers.trainer_callback import TrainerState

    from tx.core import atomic_checkpoint

    def at_step() -> bool:
        return state_of() is not None and state_of().global_step == step

    def after(owner: Any, name: str, action: Any) -> None:
        original = getattr(owner, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            result = original(*args, **kwargs)
            if at_step():
                action(*args, **kwargs)
            return result

        setattr(owner, name, wrapper)

    def staged(path: Any) -> bool:
        return atomic_checkpoint.PARTIAL_DIR in str(path)

    if phase == "model_torn":
        def tear_model(self: Any, output_dir: Any = None, _internal_call: bool = False) -> None:
            if output_dir and staged(output_dir):
                _tear(Path(output_dir) / "model.safetensors")
                _die(step, phase)
        after(transformers.Trainer, "save_model", tear_model)
    elif phase == "optimizer_torn":
        def tear_optimizer(self: Any, output_dir: Any) -> None:
            _tear(Path(output_dir) / "optimizer.pt")
            _die(step, phase)
        after(transformers.Trainer, "_save_optimizer_and_scheduler", tear_optimizer)
    elif phase == "rng_saved":
        after(transformers.Trainer, "_save_rng_state", lambda *a, **k: _die(step, phase))
    elif phase == "state_saved":
        def state_written(self: Any, json_path: Any) -> None:
            if staged(json_path):
                _die(step, phase)
        after(TrainerState, "save_to_json", state_written)
    elif phase == "fsynced":
        after(atomic_checkpoint, "fsync_tree", lambda *a, **k: _die(step, phase))
    elif phase == "published":
        after(atomic_checkpoint, "publish", lambda *a, **k: _die(step, phase))
    elif phase == "rotating":
        def half_delete(checkpoint: Path, partial_root: Path) -> None:
            partial_root.mkdir(exist_ok=True)
            trash = partial_root / f"deleting-{checkpoint.name}"
            os.replace(checkpoint, trash)
            for i, f in enumerate(sorted(trash.iterdir())):
                if i % 2 == 0:
                    f.unlink()
            _die(step, phase)
        original = atomic_checkpoint.discard

        def discard(checkpoint: Path, partial_root: Path) -> None:
            if at_step():
                half_delete(checkpoint, partial_root)
            original(checkpoint, partial_root)
        atomic_checkpoint.discard = discard


def _fill(path: Path, keep_mb: int) -> None:
    free = shutil.disk_usage(path.parent).free
    size = max(0, free - keep_mb * (1 << 20))
    with open(path, "wb") as fh:
        chunk = b"\0" * (1 << 20)
        while size > 0:
            fh.write(chunk[: min(size, len(chunk))])
            size -= len(chunk)


def make_callback() -> Any:
    from transformers import TrainerCallback

    fault = _fault()
    sleep = float(os.environ.get("TX_FAULT_SLEEP", "0") or 0)
    ready = os.environ.get("TX_FAULT_READY")
    fill = os.environ.get("TX_FAULT_FILL")
    current: dict[str, Any] = {"state": None}
    if fault and fault[1] in SAVE_PHASES:
        _patch_saves(lambda: current["state"], *fault)

    def maybe_die(phase: str, state: Any) -> None:
        if fault and fault == (state.global_step, phase):
            _die(*fault)

    class Fault(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            current["state"] = state

        def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            current["state"] = state
            if sleep:
                time.sleep(sleep)
            maybe_die("step_begin", state)

        def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            maybe_die("pre_optimizer", state)

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if ready:
                Path(ready).write_text(str(state.global_step))
            if fill:
                step, path, keep = fill.split(":")
                if state.global_step == int(step):
                    _fill(Path(path), int(keep))
            maybe_die("step_end", state)

        def on_prediction_step(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            maybe_die("eval", state)

    return Fault()


@hookimpl
def tx_trainer_callbacks(job: Any) -> list[Any]:
    return [make_callback()]
