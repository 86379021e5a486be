"""Stop training cleanly on a signal: save a checkpoint at the next step, then exit.

SIGTERM/SIGINT (Ctrl-C, `tx cancel`, a scheduler's kill) and SIGUSR1 (Slurm's warning before
the time limit or a preemption) set a flag; a Trainer callback turns it into "save now and
stop". In a multi-process run every rank must stop at the same step, so the flag is reduced
across ranks at each step end.
"""

from __future__ import annotations

import signal
from typing import Any

HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)


class StopFlag:
    """Set by a signal handler, read by the callback."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def install(self) -> None:
        for sig in HANDLED:
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        self.signum = signum

    @property
    def requested(self) -> bool:
        return self.signum is not None


def make_callback(flag: StopFlag) -> Any:
    from transformers import TrainerCallback

    class SaveOnInterrupt(TrainerCallback):
        """At a step end after a stop signal: save a checkpoint and stop training."""

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            if _any_rank(flag.requested, args):
                control.should_save = True
                control.should_training_stop = True
                state.tx_interrupted = True
            return control

    return SaveOnInterrupt()


def _any_rank(value: bool, args: Any) -> bool:
    if getattr(args, "world_size", 1) <= 1:
        return value
    import torch
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_initialized():
        return value
    t = torch.tensor([1 if value else 0], dtype=torch.int32, device=args.device if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())
