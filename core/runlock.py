"""One job per output directory at a time: ``<output_dir>/tx-run.lock``.

The lock file names the job holding the folder (job id, host, pid, the pid's start time, boot
id, restart count). It is created complete and atomically (written to a temporary name, then
hard-linked to the lock name, which fails if the name exists), so two `tx run` started together
cannot both get it.

Who holds it (one holder per job, however many processes the launcher starts):
- `tx run` with a process launcher takes it right after validation, before it writes anything
  (tx.core.stage / tx.core.run.launch), and names the process that lives for the whole run: the
  `tx` process that waits for torchrun/deepspeed/accelerate, or the process that trains for the
  local launcher. That process releases it when the run ends, whatever the outcome.
- the worker of global rank 0 (tx.core.worker) takes it when nobody holds it for its job: jobs
  of scheduler launchers (slurm, docker), whose `tx` returns at once, and workers run by hand.

The holder refreshes the lock file's modification time every :data:`HEARTBEAT_SECONDS`.

A lock is stale, and is replaced, when its holder is gone: same host and boot id but no process
with that pid and start time (kill -9, OOM), or same host and another boot id (reboot). The
processes of another host (or of a container: another host name) cannot be checked from here,
so such a lock is stale only once its heartbeat has stopped for :data:`STALE_SECONDS`; a fresh
one is never broken, with one exception: a scheduler restart of the same job (same job id,
higher TX_RESTART_COUNT) takes over the lock of its previous run, which the scheduler ended.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

from tx.core.errors import ConfigError
from tx.core.process import boot_id, start_time

LOCK_NAME = "tx-run.lock"
HEARTBEAT_SECONDS = 30.0
#: a lock of another host without a heartbeat for this long is stale (clocks of shared file
#: systems drift; keep it well above HEARTBEAT_SECONDS)
STALE_SECONDS = float(os.environ.get("TX_LOCK_STALE_SECONDS", "600"))


def _boot_id() -> str:
    return boot_id() or ""


def restart_count() -> int:
    try:
        return int(os.environ.get("TX_RESTART_COUNT", "0") or 0)
    except ValueError:
        return 0


@dataclass(frozen=True)
class Holder:
    job_id: str
    host: str
    pid: int
    pid_start: int | None
    boot_id: str
    restart: int = 0
    since: str = ""

    @classmethod
    def this(cls, job_id: str, pid: int | None = None) -> Holder:
        import datetime as dt

        pid = os.getpid() if pid is None else pid
        return cls(job_id=job_id, host=socket.gethostname(), pid=pid, pid_start=start_time(pid),
                   boot_id=_boot_id(), restart=restart_count(),
                   since=dt.datetime.now().astimezone().isoformat(timespec="seconds"))

    def describe(self) -> str:
        return f"job {self.job_id} (pid {self.pid} on host {self.host}, since {self.since or '?'})"

    def is_stale(self, age: float | None = None) -> bool:
        """Whether the holder is certainly gone: by its pid on this host, elsewhere by the
        ``age`` (seconds) of the lock's last heartbeat."""
        if self.host != socket.gethostname():
            return age is not None and age > STALE_SECONDS
        if self.boot_id and self.boot_id != _boot_id():
            return True  # the machine rebooted since
        start = start_time(self.pid)
        return start is None or (self.pid_start is not None and start != self.pid_start)


def read(output_dir: Path) -> Holder | None:
    """The lock's holder; None when there is no lock. An unreadable lock file (torn by a crash
    before tx wrote locks atomically, or edited) counts as a stale lock of nobody."""
    try:
        data = json.loads((output_dir / LOCK_NAME).read_text(encoding="utf-8"))
        return Holder(**{k: data[k] for k in Holder.__dataclass_fields__ if k in data})
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError):
        return Holder(job_id="?", host=socket.gethostname(), pid=0, pid_start=None, boot_id="")


def age(output_dir: Path) -> float | None:
    """Seconds since the lock's last heartbeat (None: no lock)."""
    try:
        return max(0.0, time.time() - (output_dir / LOCK_NAME).stat().st_mtime)
    except OSError:
        return None


def _busy(output_dir: Path, holder: Holder) -> ConfigError:
    where = output_dir / LOCK_NAME
    if holder.host != socket.gethostname():
        hint = (f"wait for it to end or cancel it (tx cancel {holder.job_id} for a slurm/docker job); if it is no longer running (its "
                f"node or container went down), delete {where} (a lock of another host counts as stale "
                f"{STALE_SECONDS:.0f} s after its last heartbeat), or choose another --output_dir")
    else:
        hint = (f"wait for it to end, stop it (kill {holder.pid}: it saves a checkpoint and stops), "
                "or choose another --output_dir")
    return ConfigError(f"output_dir {output_dir} is in use by the running {holder.describe()}", hint=hint)


def check_free(output_dir: Path, job_id: str | None = None) -> None:
    """Raise when another live job holds ``output_dir`` (read only: nothing is written)."""
    holder = read(output_dir)
    if holder is None or holder.job_id == job_id or holder.is_stale(age(output_dir)):
        return
    raise _busy(output_dir, holder)


def _takes_over(held: Holder, mine: Holder, held_age: float | None) -> bool:
    if held.job_id == mine.job_id and held.restart < mine.restart:
        return True  # the scheduler restarted this job: its previous run has ended
    return held.is_stale(held_age)


def acquire(output_dir: Path, job_id: str, pid: int | None = None) -> Holder:
    """Take the lock for ``job_id`` naming ``pid`` (default: this process), or raise
    ConfigError naming the job that holds it. Creates output_dir (the caller writes the job
    file there next)."""
    mine = Holder.this(job_id, pid)
    output_dir.mkdir(parents=True, exist_ok=True)
    lock = output_dir / LOCK_NAME
    tmp = output_dir / f".{LOCK_NAME}.{os.getpid()}.{time.monotonic_ns()}"
    tmp.write_text(json.dumps(asdict(mine), indent=1), encoding="utf-8")
    try:
        for _ in range(5):
            try:
                os.link(tmp, lock)
                return mine
            except FileExistsError:
                pass
            held = read(output_dir)
            if held is None:
                continue  # released meanwhile: try again
            if held.job_id == job_id and held.pid == mine.pid and held.host == mine.host:
                return held  # already ours
            if not _takes_over(held, mine, age(output_dir)):
                raise _busy(output_dir, held)
            # Stale: move it aside under a unique name, then retry; if another process replaced
            # it first, the link fails again and its lock is judged afresh.
            aside = output_dir / f".{LOCK_NAME}.stale.{os.getpid()}"
            try:
                os.replace(lock, aside)
                os.unlink(aside)
            except FileNotFoundError:
                pass
        raise ConfigError(f"could not lock output_dir {output_dir} (other runs keep taking it)",
                          hint="make sure one job at a time uses it, then run the same command again")
    finally:
        tmp.unlink(missing_ok=True)


def release(output_dir: Path, holder: Holder) -> None:
    """Remove the lock if it is still the one ``holder`` took (never another job's)."""
    current = read(output_dir)
    if current is not None and (current.job_id, current.pid, current.host) == (holder.job_id, holder.pid, holder.host):
        (output_dir / LOCK_NAME).unlink(missing_ok=True)


@contextmanager
def kept(output_dir: Path, holder: Holder) -> Iterator[Holder]:
    """While the body runs, refresh the lock's heartbeat; afterwards release it."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_SECONDS):
            current = read(output_dir)
            if current is None or (current.job_id, current.pid) != (holder.job_id, holder.pid):
                return
            try:
                os.utime(output_dir / LOCK_NAME)
            except OSError:
                return

    thread = threading.Thread(target=beat, name="tx-run-lock", daemon=True)
    thread.start()
    try:
        yield holder
    finally:
        stop.set()
        release(output_dir, holder)


@contextmanager
def held(output_dir: Path, job_id: str, pid: int | None = None) -> Iterator[Holder]:
    """Take the lock, keep it while the body runs, release it on every way out."""
    with kept(output_dir, acquire(output_dir, job_id, pid)) as holder:
        yield holder


@contextmanager
def worker_lock(output_dir: Path, job_id: str, main_rank: bool) -> Iterator[None]:
    """In the worker: hold the lock for the job when its launcher does not (see the module
    docstring). Other ranks, and a worker whose `tx` holds the lock for this job, do nothing."""
    if not main_rank:
        yield
        return
    current = read(output_dir)
    if current is not None and current.job_id == job_id and current.restart >= restart_count() \
            and not current.is_stale(age(output_dir)):
        yield  # `tx run` holds it for this job
        return
    with held(output_dir, job_id):
        yield
