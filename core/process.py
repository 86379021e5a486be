"""Run a child process group, forward signals, never leave orphans.

Used by every process launcher: the child starts in its own session so a signal to tx can be
forwarded to the whole group, and the group is killed if tx itself exits.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Mapping, Sequence

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1)
GRACE_SECONDS = float(os.environ.get("TX_STOP_GRACE", "30"))


def exit_code(returncode: int) -> int:
    """Popen's -N (killed by signal N) -> the shell's 128+N."""
    return 128 - returncode if returncode < 0 else returncode


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def run_group(argv: Sequence[str], env: Mapping[str, str] | None = None, cwd: str | None = None) -> int:
    """Start ``argv`` in a new process group, stream its output (inherited stdout/stderr),
    forward SIGINT/SIGTERM/SIGHUP/SIGUSR1 to the group, and return the shell-style exit code.

    After a first stop signal the group gets ``TX_STOP_GRACE`` seconds (default 30) to save and
    exit; a second signal, or the end of the grace, kills the group.
    """
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    proc = subprocess.Popen(list(argv), env=full_env, cwd=cwd, start_new_session=True)
    pgid = proc.pid
    stop_requested: list[float] = []

    def forward(signum: int, _frame: object) -> None:
        if signum != signal.SIGUSR1 and stop_requested:
            _signal_group(pgid, signal.SIGKILL)
            return
        if signum != signal.SIGUSR1:
            stop_requested.append(time.monotonic())
        _signal_group(pgid, signum)

    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED}
    try:
        while True:
            try:
                returncode = proc.wait(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                if stop_requested and time.monotonic() - stop_requested[0] > GRACE_SECONDS:
                    _signal_group(pgid, signal.SIGKILL)
    except BaseException:
        _signal_group(pgid, signal.SIGKILL)
        proc.wait()
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        # Whatever the leader did, no member of its group outlives the launch.
        _signal_group(pgid, signal.SIGKILL)
    sys.stdout.flush()
    return exit_code(returncode)
