"""Stop cleanly on a signal: during training, save a checkpoint at the next step and exit;
outside training (loading, tokenizing, final evaluation), exit at once.

SIGTERM/SIGINT (Ctrl-C, `tx cancel`, a scheduler's kill) and SIGUSR2 or SIGUSR1 (Slurm's
warning before the time limit or a preemption: `--preempt-signal`) set a flag while the Trainer loop runs; a Trainer callback
turns it into "save now and stop". In a multi-process run every rank must stop at the same
step, so the flag is reduced across ranks at each step end. A second SIGINT/SIGTERM (a
stop signal repeated within DUPLICATE_SECONDS counts once), or one
outside training, raises :class:`SignalExit` (a BaseException, so no ``except Exception`` in a
library swallows it); checkpoints are written atomically, so that is safe at any point.

Exit codes follow the shell: 128 + signal number (130 SIGINT, 143 SIGTERM, 138 SIGUSR1, 140 SIGUSR2).
"""

from __future__ import annotations

import signal
import time
from typing import Any

#: warnings: save and stop during training, nothing to do outside it (the Slurm launcher's preemption signals)
WARNINGS = (signal.SIGUSR1, signal.SIGUSR2)
HANDLED = (signal.SIGTERM, signal.SIGINT, *WARNINGS)
#: A SIGTERM this soon after the first is the same request delivered twice, not "stop now": Slurm
#: signals every process of a job step, and the launch tool in the step (torchrun) forwards the
#: signal to its workers as well. Likewise DeepSpeed's launcher answers the SIGINT its workers
#: already got from their process group with a SIGTERM to each of them.
DUPLICATE_SECONDS = 5.0


def signal_name(signum: int | None) -> str:
    try:
        return signal.Signals(signum).name if signum else "a signal"
    except ValueError:
        return f"signal {signum}"


def exit_code_for(signum: int) -> int:
    return 128 + int(signum)


class SignalExit(BaseException):
    """Stop now because of a signal (raised from the handler)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class StopFlag:
    """Set by a signal handler while training runs, read by the callback."""

    def __init__(self, save_on_interrupt: bool = True) -> None:
        self.signum: int | None = None
        self.save_on_interrupt = save_on_interrupt
        #: True between the Trainer's on_train_begin and on_train_end: a signal is deferred
        self.training = False
        self._first_at = 0.0

    def install(self) -> None:
        import threading

        if threading.current_thread() is not threading.main_thread():
            return  # only the main thread may set handlers (torch_xla.launch runs one thread per device)
        for sig in HANDLED:
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, _frame: Any) -> None:
        now = time.monotonic()
        if self.training and self.save_on_interrupt and self.signum is None:
            self.signum = signum  # the callback saves at the next step end
            self._first_at = now
            return
        if signum in WARNINGS:
            return  # a warning, not an order: outside training there is nothing to save
        if self.signum is not None and now - self._first_at < DUPLICATE_SECONDS:
            return  # the same stop delivered twice (see DUPLICATE_SECONDS), not a second request
        raise SignalExit(signum)

    @property
    def requested(self) -> bool:
        return self.signum is not None


def make_callback(flag: StopFlag) -> Any:
    from transformers import TrainerCallback

    class SaveOnInterrupt(TrainerCallback):
        """At a step end after a stop signal: save a checkpoint and stop training."""

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            flag.training = True

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            if _any_rank(flag.requested, args):
                control.should_save = True
                control.should_training_stop = True
                state.tx_interrupted = True
            return control

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            flag.training = False

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
