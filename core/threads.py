"""Intra-op threads of a CPU training process: no more than the cores other processes leave free,
chosen once per job so that a resumed run computes exactly what the uninterrupted one did.

torch starts one OpenMP thread per core, and OpenMP threads spin while they wait for each
other. When another process keeps a core busy (a CI job, a second training, torchrun's other
ranks), every operation waits for the thread that lost its core: measured here on 2 cores with
one other busy process, a training step took about 8 times longer with 2 threads than with 1
(README "Performance"). So a worker training on the CPU looks, when training starts, at how much
CPU the *other* processes used while it loaded the model and data (/proc/stat minus this
process's own time) and uses ``cores - busy`` threads, at least 1 and at most torch's own
default. An idle machine keeps torch's default.

The count is then fixed for the job: CPU results depend on it (a matmul or a sum split over 1 or 2
threads adds in another order), so it never changes during a run, it is saved in every
checkpoint (``trainer_state.json``), and a resumed run uses the count its checkpoint recorded,
whatever the load is then. (It used to follow the load every 10 s; a resumed summarization
run then ended 7.9e-4 away from the uninterrupted run's weights.) Load that comes or goes after
the start is not followed: that is the price of reproducible runs (README "Performance").

Left alone: runs with a CUDA device, and runs where OMP_NUM_THREADS or MKL_NUM_THREADS is set
(by the user, or by torchrun for several processes per node); the count is still recorded, and a
resume with another count says that its weights will differ. ``TX_TUNE_THREADS=0`` turns the
choice off. Linux only (/proc); elsewhere torch's default is kept. No heavy import at module level.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any

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
    """Chooses this job's intra-op thread count once (see the module docstring) and keeps it."""

    def __init__(self, tune: bool = True) -> None:
        import torch

        self.tune = tune
        self.most = torch.get_num_threads()
        self.cores = usable_cores()
        self.last = snapshot()
        self.threads: int | None = None  # fixed once chosen (or taken from a checkpoint)
        self.history: list[tuple[float, int]] = []  # (others' busy cores, threads) of the one look

    def choose(self) -> int:
        """Look at the other processes' load since this tuner was made (waiting a moment when that
        is too short to tell), pick the thread count, apply it; never again for this job."""
        if self.threads is not None:
            return self.threads
        threads = self.most
        now = snapshot()
        if self.tune and self.last is not None and now is not None:
            if now.total - self.last.total < 10 * self.cores:  # under 0.1 s (ticks are 10 ms): look longer
                time.sleep(0.2)
                now = snapshot() or now
            busy = others_busy(self.last, now, self.cores)
            threads = pick_threads(self.cores, busy, self.most)
            self.history.append((round(busy, 2), threads))
            if threads != self.most:
                logging.getLogger("tx").info("other processes keep %.1f of %d cores busy: %d intra-op thread(s) "
                                             "for this job", busy, self.cores, threads)
        self.apply(threads)
        return threads

    def apply(self, threads: int) -> None:
        """Fix the count (a resumed job: the one its checkpoint recorded)."""
        import torch

        self.threads = int(threads)
        if self.tune and torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)


#: name under which the count is stored in trainer_state.json ("stateful_callbacks") of each checkpoint
STATE_KEY = "TxIntraOpThreads"


def recorded(state: Any) -> int | None:
    """The thread count a checkpoint's TrainerState recorded, if any."""
    entry = (getattr(state, "stateful_callbacks", None) or {}).get(STATE_KEY)
    if isinstance(entry, list):
        entry = entry[-1] if entry else None
    value = ((entry or {}).get("args") or {}).get("intra_op_threads") if isinstance(entry, dict) else None
    return int(value) if isinstance(value, int) and value > 0 else None


def agree(threads: int) -> int:
    """Several processes of one job use rank 0's choice (and so on resume, where all read the same
    checkpoint): one count for the whole job."""
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            box = [threads]
            dist.broadcast_object_list(box, src=0)
            return int(box[0])
    except (RuntimeError, ValueError):
        pass
    return threads


def callback(tuner: ThreadTuner) -> Any:
    """A TrainerCallback that fixes the job's thread count when training starts: the count the
    resumed checkpoint recorded, else ``tuner``'s choice from the load now. The count is saved in
    every checkpoint (trainer_state.json, written with the checkpoint, atomically) and never
    changes during the run. An evaluation/prediction-only run chooses at its first batch."""
    from transformers import TrainerCallback
    from transformers.trainer_callback import ExportableState

    class TxIntraOpThreads(TrainerCallback, ExportableState):
        def __init__(self, intra_op_threads: int | None = None) -> None:
            self.intra_op_threads = intra_op_threads  # (transformers may rebuild it from a checkpoint's state)

        def state(self) -> dict[str, Any]:
            return {"args": {"intra_op_threads": tuner.threads}, "attributes": {}}

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            before = recorded(state)
            if before is not None and tuner.tune:
                tuner.apply(before)
            elif before is not None:  # OMP_NUM_THREADS/TX_TUNE_THREADS=0: the user's count wins
                tuner.apply(tuner.most)
                if before != tuner.threads:
                    logging.getLogger("tx").warning(
                        "the checkpoint was trained with %d intra-op thread(s), this run uses %d: the weights "
                        "will differ slightly from an uninterrupted run", before, tuner.threads)
            else:
                chosen = tuner.choose()
                tuner.apply(agree(chosen) if tuner.tune else chosen)  # no collective when nothing is tuned
            # a checkpoint of an older tx has no entry: transformers' save would fail on the missing key
            state.stateful_callbacks[STATE_KEY] = self.state()

        def on_prediction_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if tuner.threads is None:
                tuner.choose()

    return TxIntraOpThreads()
