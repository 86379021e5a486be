"""Test-only tx plugin (``tx -p tx_slow_plugin run ...``) that makes the moments a test wants to
interrupt last long enough to hit them, and says when they are under way:

- ``TX_SLOW_STEP=SECONDS`` — sleep at every step begin; each step end writes the step number
  to ``TX_SLOW_DIR/step``.
- ``TX_SLOW_SAVE=SECONDS`` — inside every checkpoint save, once the weights are written to the
  staging folder (``.tx-partial``, core/atomic_checkpoint.py), write ``TX_SLOW_DIR/saving`` and
  sleep: the checkpoint is half made for that long.

Only the public hook (tx_trainer_callbacks) and a wrapper around ``Trainer.save_model``, applied
in the worker when the hook is called (so `tx` itself never imports transformers).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from tx.core.hookspecs import hookimpl


def _slow_saves(seconds: float, marker: Path) -> None:
    import transformers

    original = transformers.Trainer.save_model
    if getattr(original, "tx_slow", False):
        return

    def save_model(self: Any, output_dir: Any = None, _internal_call: bool = False) -> None:
        original(self, output_dir, _internal_call)
        if output_dir and ".tx-partial" in str(output_dir):
            marker.write_text(str(os.getpid()))
            time.sleep(seconds)

    save_model.tx_slow = True  # type: ignore[attr-defined]
    transformers.Trainer.save_model = save_model


@hookimpl
def tx_trainer_callbacks(job: Any) -> list[Any]:
    from transformers import TrainerCallback

    out = Path(os.environ["TX_SLOW_DIR"])
    step_sleep = float(os.environ.get("TX_SLOW_STEP", "0") or 0)
    save_sleep = float(os.environ.get("TX_SLOW_SAVE", "0") or 0)
    if save_sleep:
        _slow_saves(save_sleep, out / "saving")

    class Slow(TrainerCallback):
        def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if step_sleep:
                time.sleep(step_sleep)

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            (out / "step").write_text(str(state.global_step))

    return [Slow()]
