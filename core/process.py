"""Run a child process group, forward signals, never leave orphans.

Used by every process launcher: the child starts in its own session so a signal to tx can be
forwarded to it, and everything it started is killed before tx returns.

Launch tools start their workers in sessions of their own (torchrun does, so a Ctrl-C in the
terminal reaches the tool and not the workers directly), so the child's process group alone
does not hold every worker. tx therefore follows the whole process tree below the child: on
Linux it becomes a "child subreaper" (workers whose launcher died are re-parented to tx, not to
init) and it scans /proc while the job runs, so it can still find and kill them at the end.

All of that needs `tx` alive. When `tx` itself dies without a word (kill -9, the OOM killer, a
closed SSH session's SIGKILL), its children are re-parented to init and nothing would stop them.
So every process of the job watches `tx`: ``run_group`` names it in ``TX_WATCH`` (boot id, pid
namespace, pid and start time, which launch tools pass on to the workers with the rest of the
environment), and the stage child, the launch tool and every worker call :func:`watch_parent`
first thing. That starts a thread waiting on a pidfd of `tx` (no polling); when `tx` is gone it
SIGKILLs every process below its own and then itself. Several layers watch (torchrun's agent and
each worker), so no layer depends on another one still running. Not PR_SET_PDEATHSIG: it only
covers direct children, fires when the *thread* that forked exits, and would kill a launch tool
before it could kill its workers.
"""

from __future__ import annotations

import ctypes
import os
import signal
import select
import subprocess
import sys
import threading
import time
from typing import Mapping, Sequence

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1)
#: signals that mean "stop the job"; the exit code then says so (128 + N)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
GRACE_SECONDS = float(os.environ.get("TX_STOP_GRACE", "30"))
_POLL_SECONDS = 0.5
_PR_SET_CHILD_SUBREAPER = 36
_PR_GET_CHILD_SUBREAPER = 37


def exit_code(returncode: int) -> int:
    """Popen's -N (killed by signal N) -> the shell's 128+N."""
    return 128 - returncode if returncode < 0 else returncode


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _proc_stat(pid: int) -> tuple[int, int, str] | None:
    """(ppid, start time, state) of ``pid`` from /proc, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read().decode("ascii", "replace")
    except OSError:
        return None
    fields = data[data.rfind(")") + 2:].split()  # the command name may hold spaces and parens
    try:
        return int(fields[1]), int(fields[19]), fields[0]
    except (IndexError, ValueError):
        return None


def _process_table() -> dict[int, tuple[int, int, str]]:
    table = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return table
    for name in names:
        if name.isdigit():
            stat = _proc_stat(int(name))
            if stat is not None:
                table[int(name)] = stat
    return table


class ProcessTree:
    """Every process seen below one root since it started, remembered with its start time so
    that a recycled pid is never signalled by mistake. Works from /proc (Linux); elsewhere it
    stays empty and only the root's process group is handled."""

    def __init__(self, root: int, own_children: set[int]) -> None:
        self.root = root
        self.seen: dict[int, int] = {}  # pid -> start time
        self._own_children = own_children  # our children that existed before the launch

    def scan(self) -> None:
        table = _process_table()
        me = os.getpid()
        roots = {self.root} | set(self.seen)
        # workers orphaned by a dead launcher are re-parented to us (subreaper)
        roots |= {pid for pid, (ppid, _, _) in table.items()
                  if ppid == me and pid not in self._own_children}
        children: dict[int, list[int]] = {}
        for pid, (ppid, _, _) in table.items():
            children.setdefault(ppid, []).append(pid)
        stack = [pid for pid in roots if pid in table]
        while stack:
            pid = stack.pop()
            start = table[pid][1]
            if pid != self.root and self.seen.get(pid) not in (None, start):
                continue  # recycled pid: not ours
            if pid != self.root:
                self.seen[pid] = start
            stack.extend(c for c in children.get(pid, ()) if c not in self.seen)

    def alive(self) -> list[int]:
        """Tracked processes still running (zombies are done: only their parent's wait is missing)."""
        out = []
        for pid, start in self.seen.items():
            stat = _proc_stat(pid)
            if stat is not None and stat[1] == start and stat[2] != "Z":
                out.append(pid)
        return out

    def groups(self) -> set[int]:
        """Process groups of the tracked processes still running."""
        out = set()
        for pid in self.alive():
            try:
                out.add(os.getpgid(pid))
            except (ProcessLookupError, PermissionError):
                pass
        return out

    def signal(self, sig: int) -> None:
        for pid in self.alive():
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass

    def reap(self, timeout: float = 2.0) -> None:
        """Wait (briefly) until the killed processes are gone, and collect the exit status of
        those re-parented to us, so no zombie is left behind."""
        end = time.monotonic() + timeout
        pending = set(self.seen)
        while pending:
            for pid in list(pending):
                try:
                    done, _ = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:  # not our child: its own parent reaps it
                    done = pid if pid not in self.alive() else 0
                if done:
                    pending.discard(pid)
            if not pending or time.monotonic() > end:
                break
            time.sleep(0.05)


def _set_subreaper(on: bool) -> bool:
    """Make this process the reaper of its orphaned descendants (Linux); True if it changed."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        current = ctypes.c_int(0)
        libc.prctl(_PR_GET_CHILD_SUBREAPER, ctypes.byref(current), 0, 0, 0)
        if bool(current.value) == on:
            return False
        return libc.prctl(_PR_SET_CHILD_SUBREAPER, 1 if on else 0, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _own_children() -> set[int]:
    me = os.getpid()
    return {pid for pid, (ppid, _, _) in _process_table().items() if ppid == me}


#: environment variable naming the `tx` process a job belongs to (:func:`watch_token`)
WATCH_ENV = "TX_WATCH"
_watching: int | None = None  # pid of the process whose watch thread runs (a fork has none)


def boot_id() -> str | None:
    """This boot of this machine (a pid names the same process only within one boot)."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as fh:
            return fh.read().strip()
    except OSError:
        return None


def start_time(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot; it tells a recycled pid from the process that
    was meant), or None when no such process runs (a zombie does not)."""
    stat = _proc_stat(pid)
    return None if stat is None or stat[2] in ("Z", "X") else stat[1]


def _machine() -> str | None:
    """This boot of this machine, as seen from this pid namespace: a pid means the same process
    only where this is the same (not on another node, not in a container)."""
    boot = boot_id()
    try:
        return None if boot is None else f"{boot}/{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        return None


def watch_token(pid: int | None = None) -> str | None:
    """``MACHINE:PID:START`` for ``pid`` (default: this process), or None where /proc is missing.
    The start time tells a recycled pid from the process that was meant."""
    pid = os.getpid() if pid is None else pid
    machine, stat = _machine(), _proc_stat(pid)
    if machine is None or stat is None:
        return None
    return f"{machine}:{pid}:{stat[1]}"


def parse_token(token: str) -> tuple[str, int, int] | None:
    """Pure: (machine, pid, start time) of a :func:`watch_token`, or None when malformed."""
    machine, _, rest = token.rpartition(":")
    machine, _, pid = machine.rpartition(":")
    if not (machine and pid.isdigit() and rest.isdigit()):
        return None
    return machine, int(pid), int(rest)


def _descendants(root: int) -> list[int]:
    """Every process below ``root`` (from /proc), parents before their children."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in _process_table().items():
        children.setdefault(ppid, []).append(pid)
    out, stack = [], list(children.get(root, ()))
    while stack:
        pid = stack.pop()
        out.append(pid)
        stack.extend(children.get(pid, ()))
    return out


def kill_tree_and_self() -> None:
    """SIGKILL every process below this one, then this one. Repeated until none is left, so a
    process forked during the sweep is caught (a stopped parent cannot fork again)."""
    for _ in range(5):
        pids = _descendants(os.getpid())
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    os.kill(os.getpid(), signal.SIGKILL)


def _gone(pid: int, start: int) -> bool:
    stat = _proc_stat(pid)
    return stat is None or stat[1] != start or stat[2] in ("Z", "X")


def _say_gone(pid: int) -> None:
    if os.environ.get("RANK", "0") != "0":
        return  # one line per job is enough
    try:
        os.write(2, f"tx: the tx process {pid} that ran this job is gone; stopping the job (pid {os.getpid()})\n"
                 .encode())
    except OSError:  # its terminal or pipe may be gone with it
        pass


def _wait_then_kill(pid: int, start: int, pidfd: int | None) -> None:
    if pidfd is not None:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)  # readable once the process has exited
        while not poller.poll():
            pass
    else:
        while not _gone(pid, start):
            time.sleep(_POLL_SECONDS)
    _say_gone(pid)
    kill_tree_and_self()


def watch_parent(env: Mapping[str, str] | None = None) -> bool:
    """When ``TX_WATCH`` names a `tx` process on this machine: kill this process and everything
    below it as soon as that `tx` is gone (at once if it already is). Called first thing by
    every process of a job (tx.core.stage, tx.core.launchtool, tx.core.worker); a second call
    in the same process does nothing. True when a watch runs."""
    global _watching
    env = os.environ if env is None else env
    parsed = parse_token(env.get(WATCH_ENV, ""))
    if parsed is None or _watching == os.getpid():
        return _watching == os.getpid()
    machine, pid, start = parsed
    if machine != _machine():
        return False  # another node or container: that pid is not the tx that launched us
    pidfd = None
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        pass  # gone already: _gone() below says so
    except (OSError, AttributeError):  # no pidfd (old kernel, seccomp): poll /proc instead
        pidfd = None
    if _gone(pid, start):  # checked after pidfd_open: the pidfd is of the right process
        _say_gone(pid)
        kill_tree_and_self()
    threading.Thread(target=_wait_then_kill, args=(pid, start, pidfd), name="tx-watch", daemon=True).start()
    _watching = os.getpid()
    return True


def run_group(argv: Sequence[str], env: Mapping[str, str] | None = None, cwd: str | None = None,
              pass_fds: Sequence[int] = ()) -> int:
    """Start ``argv`` in a new session, stream its output (inherited stdout/stderr), forward
    SIGINT/SIGTERM/SIGHUP/SIGUSR1, and return the shell-style exit code.

    A stop signal (SIGINT, SIGTERM, SIGHUP) goes to the child's process group only: launch tools
    (torchrun, deepspeed, accelerate) pass it on to their workers, and a worker must not get it
    twice (a second SIGINT means "stop now"). SIGUSR1, which launch tools do not pass on, goes to
    every process group of the job. After a signal the job gets ``TX_STOP_GRACE`` seconds
    (default 30) to save and exit; a second stop signal, or the end of the grace, kills every
    process of the job. Whatever happens, no process of the job outlives this call (nor `tx`
    itself: the job's processes watch it, :func:`watch_parent`). When the job
    was stopped by a signal and did not finish cleanly, the exit code is 128 + that signal.
    ``pass_fds`` stay open in the child (tx.core.stage hands the plan back through a pipe).
    """
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    token = watch_token()
    if token:
        full_env[WATCH_ENV] = token  # the job's processes die with this one (watch_parent)
    before = _own_children()
    subreaper = _set_subreaper(True)
    proc = subprocess.Popen(list(argv), env=full_env, cwd=cwd, start_new_session=True, pass_fds=tuple(pass_fds))
    job = _Job(proc, ProcessTree(proc.pid, before))
    previous = {sig: signal.signal(sig, job.on_signal) for sig in FORWARDED}
    try:
        returncode = job.wait()
    except BaseException:
        job.kill_all()
        proc.wait()
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        # Whatever the leader did, no process of the job outlives the launch.
        job.kill_all()
        job.tree.reap()
        if subreaper:
            _set_subreaper(False)
    sys.stdout.flush()
    code = exit_code(returncode)
    if job.stops and code != 0:
        return 128 + job.stops[0]
    return code


class _Job:
    """State shared by the signal handler and the wait loop. The handler only forwards the first
    stop signal (a cheap killpg) and records requests; the loop does the /proc work."""

    def __init__(self, proc: subprocess.Popen, tree: ProcessTree) -> None:
        self.proc = proc
        self.tree = tree
        self.stops: list[int] = []
        self.deadline: float | None = None  # a stop signal's grace: kill everything after it
        self.drain_until: float | None = None  # after any signal: how long workers may outlive the leader
        self.kill_requested = False
        self.usr1_pending = False

    def on_signal(self, signum: int, _frame: object) -> None:
        if signum == signal.SIGUSR1:  # a warning (Slurm's time limit): the job decides, no deadline
            self.usr1_pending = True
        elif self.stops:  # a second stop signal: stop now
            self.kill_requested = True
        else:
            self.stops.append(signum)
            self.deadline = time.monotonic() + GRACE_SECONDS
            _signal_group(self.proc.pid, signum)
        if self.drain_until is None:
            self.drain_until = time.monotonic() + GRACE_SECONDS

    def kill_all(self) -> None:
        self.tree.scan()
        _signal_group(self.proc.pid, signal.SIGKILL)
        self.tree.signal(signal.SIGKILL)

    def _act(self) -> None:
        self.tree.scan()
        if self.usr1_pending:
            self.usr1_pending = False
            for pgid in {self.proc.pid, *self.tree.groups()}:
                _signal_group(pgid, signal.SIGUSR1)
        if self.kill_requested or (self.deadline is not None and time.monotonic() > self.deadline):
            self.kill_all()

    def wait(self) -> int:
        while True:
            try:
                returncode = self.proc.wait(timeout=_POLL_SECONDS)
                break
            except subprocess.TimeoutExpired:
                self._act()
        # Workers whose launcher has exited: after a signal they may still be saving a
        # checkpoint, so they get what is left of the grace; otherwise they are strays. A
        # launcher that died of the signal may not have passed it on: pass it on now (a worker
        # that already has it takes a repeat within seconds as the same request, interrupt.py).
        self.tree.scan()
        if self.stops and not self.kill_requested:
            for pgid in self.tree.groups():
                _signal_group(pgid, self.stops[0])
        while self.drain_until is not None and self.tree.alive() and not self.kill_requested \
                and time.monotonic() < self.drain_until:
            time.sleep(0.2)
            self._act()
        return returncode
