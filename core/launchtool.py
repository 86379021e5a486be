"""`python -m tx.core.launchtool MODULE ARGS...`: run a launch tool as ``python -m MODULE ARGS``
would (torch.distributed.run, deepspeed.launcher.runner, accelerate.commands.launch), ending the
way every tx command ends.

Why not run the tool directly: the workers already print what went wrong (one ``tx: error`` /
``tx: interrupted`` line), but the tools then add a Python traceback of their own on Ctrl-C or
SIGTERM (torchrun's SignalException, the DeepSpeed runner's KeyboardInterrupt) or when a worker
fails (torchrun's ChildFailedError), and torchrun exits 1 whatever the worker's exit code was.
Here the tool runs in this process (``runpy``, so ``-m`` semantics and the tool's own signal
handling are unchanged) and its end becomes an exit code:

- stopped by a signal: 128 + the signal (130 Ctrl-C, 143 SIGTERM);
- a worker failed: that worker's exit code (rank 0's when it failed), so ``tx run`` under
  torchrun exits like ``tx run`` alone;
- otherwise the tool's own exit code.

``{free_port}`` in ARGS is replaced by a TCP port that is free on this host, so tools that
need a fixed rendezvous port (deepspeed, accelerate) get one without ``plan()`` picking it
(plans stay pure, and the port is picked where the command runs: for the slurm and docker
launchers that is not where it was planned). The kernel picks the port (bind to port 0); another
process could take it before the tool binds it, but two jobs started together on one host get
different ports, which a fixed default such as 29500 never gives.

A signal that arrives while the tool has not started any process yet ends it at once; after
that the tool is left to stop its workers (they save a checkpoint first) and the signal only
decides the exit code. SIGUSR1 and SIGUSR2 are ignored by the tool (tx sends them to the workers themselves).
"""

from __future__ import annotations

import os
import runpy
import signal
import socket
import sys
from typing import Any

PLACEHOLDER = "{free_port}"
_STOP = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def free_port(host: str = "") -> int:
    """A TCP port nobody listens on right now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def substitute(argv: list[str], port: int) -> list[str]:
    """Pure: every ``{free_port}`` in ``argv`` replaced by ``port``."""
    return [arg.replace(PLACEHOLDER, str(port)) for arg in argv]


def shell_code(returncode: int) -> int:
    """-N (killed by signal N) -> 128 + N, as a shell reports it."""
    return 128 - returncode if returncode < 0 else returncode


def failure_code(failures: dict[int, Any]) -> tuple[int, int, int]:
    """Pure: (rank, exit code, raw code) of the failure that decides the exit code: rank 0's
    when it failed (it prints the job's messages), else the lowest failed rank's."""
    rank = 0 if 0 in failures else min(failures)
    raw = int(getattr(failures[rank], "exitcode", 1))
    return rank, shell_code(raw), raw


def _has_children() -> bool:
    me = str(os.getpid())
    try:
        names = os.listdir("/proc")
    except OSError:
        return True  # cannot tell: let the tool handle the signal
    for name in names:
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as fh:
                    data = fh.read().decode("ascii", "replace")
            except OSError:
                continue
            if data[data.rfind(")") + 2:].split()[1:2] == [me]:
                return True
    return False


def run(module: str, args: list[str]) -> int:
    """Run ``python -m module args`` in this process; return the exit code described above."""
    stops: list[int] = []

    def on_stop(signum: int, _frame: Any) -> None:
        stops.append(signum)
        if not _has_children():
            raise KeyboardInterrupt  # nothing started yet: stop now

    for sig in _STOP:
        signal.signal(sig, on_stop)  # tools that handle signals themselves replace this
    # SIGUSR1 (Slurm's warning) is for the workers, which tx signals directly: the tool and what
    # it starts ignore it until they install a handler (the worker does), instead of dying of it.
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)  # the same for the other preemption signal (--preempt-signal)
    sys.argv = [module, *args]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt:
        code = 128 + signal.SIGINT
    except BaseException as exc:  # the tools' own exception types, without importing them here
        kind = type(exc).__name__
        if kind == "SignalException":
            stops.append(int(getattr(exc, "sigval", signal.SIGTERM)))
            code = 1
        elif kind == "ChildFailedError":
            rank, code, raw = failure_code(exc.failures)  # type: ignore[attr-defined]
            if raw < 0 and not stops:
                name = signal.Signals(-raw).name if -raw in signal.Signals._value2member_map_ else str(-raw)
                print(f"tx: error: worker rank {rank} was killed by {name}.", file=sys.stderr, flush=True)
        elif kind == "CalledProcessError":
            code = shell_code(int(getattr(exc, "returncode", 1)))
        else:
            raise
    if stops and code != 0:
        return 128 + stops[0]
    return code


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0].startswith("-"):
        print("usage: python -m tx.core.launchtool MODULE [ARGS...]  ({free_port} in ARGS becomes a free port)",
              file=sys.stderr)
        return 2
    module, rest = args[0], args[1:]
    from tx.core.process import watch_parent

    watch_parent()  # `tx` killed (even with SIGKILL): this tool and every worker below it stop
    if any(PLACEHOLDER in a for a in rest):
        rest = substitute(rest, free_port())
    sys.stdout.flush()
    return run(module, rest)


if __name__ == "__main__":
    sys.exit(main())
