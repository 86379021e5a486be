"""Intra-op threads of a CPU training process: no more than the cores other processes leave free.

torch starts one OpenMP thread per core, and OpenMP threads spin while they wait for each
other. When another process keeps a core busy (a CI job, a second training, torchrun's other
ranks), every operation waits for the thread that lost its core: measured here on 2 cores with
one other busy process, a training step took about 8 times longer with 2 threads than with 1
(README "Performance"). So a worker training on the CPU looks, when training starts and then
every :data:`CHECK_SECONDS`, at how much CPU the *other* processes used since the last look
(/proc/stat minus this process's own time) and uses ``cores - busy`` threads, at least 1 and at
most torch's own default. An idle machine keeps torch's default.

Left alone: runs with a CUDA device, and runs where OMP_NUM_THREADS or MKL_NUM_THREADS is set
(by the user, or by torchrun for several processes per node). ``TX_TUNE_THREADS=0`` turns this
off. Linux only (/proc); elsewhere nothing changes. No heavy import at module level.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any

#: seconds between two looks during training (and during evaluation/prediction)
CHECK_SECONDS = 10.0
#: another process using at least this share of a core counts as one busy core
BUSY_SHARE = 0.3
OFF_ENV = "TX_TUNE_THREADS"
EXPLICIT_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass(frozen=True)
class Snapshot:
    """CPU time of the whole machine (busy and total, in clock ticks) and of this process."""

    busy: int
    total: int
    own: int
    at: float


def snapshot() -> Snapshot | None:
    """Now; None when /proc cannot tell (not Linux)."""
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            fields = [int(x) for x in fh.readline().split()[1:9]]
        with open("/proc/self/stat", encoding="ascii") as fh:
            own_fields = fh.read().rsplit(")", 1)[1].split()
    except (OSError, ValueError, IndexError):
        return None
    idle = fields[3] + fields[4]  # idle + iowait
    own = int(own_fields[11]) + int(own_fields[12])  # utime + stime, all threads of this process
    return Snapshot(busy=sum(fields) - idle, total=sum(fields), own=own, at=time.monotonic())


def others_busy(before: Snapshot, after: Snapshot, cores: int) -> float:
    """Cores' worth of CPU used by other processes between two snapshots."""
    total = after.total - before.total
    if total <= 0:
        return 0.0
    # /proc/stat sums over every core: total ticks = cores x wall ticks
    others = (after.busy - before.busy) - (after.own - before.own)
    return max(0.0, others / total * cores)


def pick_threads(cores: int, busy: float, most: int) -> int:
    """Threads for this process: the cores left by ``busy`` others, between 1 and ``most``."""
    taken = int(busy + (1 - BUSY_SHARE))  # 0.3 of a core already counts as a busy core
    return max(1, min(most, cores - taken))


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def should_tune(env: Any = None, accelerator: bool = False) -> bool:
    """Whether to tune: training on the CPU, no thread count set, not turned off."""
    env = os.environ if env is None else env
    if accelerator or env.get(OFF_ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    return not any(env.get(name) for name in EXPLICIT_ENV)


class ThreadTuner:
    """Applies :func:`pick_threads` now and then (see the module docstring)."""

    def __init__(self) -> None:
        import torch

        self.most = torch.get_num_threads()
        self.cores = usable_cores()
        self.last = snapshot()
        self.history: list[tuple[float, int]] = []  # (others' busy cores, threads) per look

    def check(self, force: bool = False) -> None:
        """Look if CHECK_SECONDS have passed since the last look (at once for the first one)."""
        if self.last is None:
            return
        if self.history and not force and time.monotonic() - self.last.at < CHECK_SECONDS:
            return  # (called at every step: only a clock read until it is time)
        now = snapshot()
        if now is None:
            return
        if now.total - self.last.total < 10 * self.cores:  # too short to tell (ticks are 10 ms)
            return
        busy = others_busy(self.last, now, self.cores)
        self.last = now
        threads = pick_threads(self.cores, busy, self.most)
        import torch

        if threads != torch.get_num_threads():
            torch.set_num_threads(threads)
            logging.getLogger("tx").info("other processes keep %.1f of %d cores busy: %d intra-op thread(s)",
                                         busy, self.cores, threads)
        self.history.append((round(busy, 2), threads))


def callback(tuner: ThreadTuner) -> Any:
    """A TrainerCallback that lets ``tuner`` look when training starts, then every CHECK_SECONDS
    during training, evaluation and prediction."""
    from transformers import TrainerCallback

    class TuneThreads(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            tuner.check(force=True)

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            tuner.check()

        def on_prediction_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            tuner.check()

    return TuneThreads()
