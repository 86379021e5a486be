"""`python -m tx.core.worker <job file>`: what every launched process runs.

The job file is the only argument, so nothing is ever re-quoted through a shell.

How a worker of a multi-process job ends matters as much as how it trains: a worker that aborts
after its work is written makes the launch tool stop the other ranks, and a finished job reports
failure (seen once: rank 1 died of SIGABRT, "terminate called without an active exception", after
writing the model; torchrun then stopped rank 0 and `tx` exited 143). Left to interpreter
finalization, a process group's C++ threads (gloo's) can still hold work that needs the GIL
while Python is torn down. So a worker that finished shuts its process group down itself
(:func:`close_process_group`), and a worker of a multi-process job leaves without finalization
once Python's own exit steps are done (:func:`exit_process`).
"""

from __future__ import annotations

import errno
import os
import sys
from typing import TYPE_CHECKING

from tx.core.errors import TxError

if TYPE_CHECKING:
    from tx.core.plugins import Plugins


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 1:
        print("usage: python -m tx.core.worker <tx-job.yaml>", file=sys.stderr)
        return 2
    return run(argv[0])


def run(job_file: str, loaded: Plugins | None = None) -> int:
    """Run the job in ``job_file`` in this process; return its exit code. ``loaded``: plugins
    already loaded here (`tx run --launcher local` trains in the process that validated the job,
    tx.core.stage), used when they hold every plugin module the job names."""
    from tx.core import jobspec, plugins, runlock, trainer
    from tx.core.errors import Interrupted
    from tx.core.interrupt import SignalExit, exit_code_for, signal_name
    from tx.core.process import watch_parent

    watch_parent()  # no worker trains on after the `tx` that launched it died (kill -9 included)

    rank = os.environ.get("RANK", "0")
    prefix = "tx: " if rank == "0" else f"tx[rank {rank}]: "
    try:
        job = jobspec.read(job_file)
        if loaded is None or not set(job.plugins) <= {info.module for info in loaded.infos.values()}:
            loaded = plugins.load(extra_modules=job.plugins)
        task = loaded.tasks.get(job.task)
        with runlock.worker_lock(job.output_dir, job.job_id, main_rank=rank == "0"):  # one job per output dir
            trainer.run(task, job, loaded)
    except Interrupted as exc:  # every rank stops at the same step: rank 0 alone says so
        if rank == "0":
            print(f"tx: interrupted: {exc.one_line()}", file=sys.stderr, flush=True)
        return exc.exit_code
    except TxError as exc:
        print(f"{prefix}{exc.label}: {exc.one_line()}", file=sys.stderr, flush=True)
        return exc.exit_code
    except SignalExit as exc:  # outside training, or a second signal: stopped without saving
        if rank == "0":
            print(f"tx: interrupted: stopped by {signal_name(exc.signum)} (nothing saved since the last "
                  "checkpoint). Run the same command again to resume.", file=sys.stderr, flush=True)
        return exit_code_for(exc.signum)
    except KeyboardInterrupt:
        if rank == "0":
            print("tx: interrupted: stopped by SIGINT. Run the same command again to resume.",
                  file=sys.stderr, flush=True)
        return 130
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            print(f"{prefix}error: no space left on the device ({exc.filename or 'while writing'}). Free some "
                  "space, then run the same command again to resume.", file=sys.stderr, flush=True)
            return 1
        raise
    close_process_group()
    return 0


def close_process_group() -> None:
    """Shut down this process's torch.distributed process group, if it has one, while Python is
    fully alive. Only after success: every rank has then left its last collective (a rank that
    failed may leave the others inside one, where shutting down would wait forever)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return  # never imported: no process group
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def exit_process(code: int) -> None:
    """End this worker process with ``code``. A worker of a multi-process job (WORLD_SIZE > 1)
    does what the interpreter's exit does (wait for non-daemon threads, run the atexit handlers,
    flush) and then leaves with ``os._exit``, skipping the finalization in which C++ threads
    of torch.distributed and its libraries can abort the process after its work is done."""
    from tx.core.distributed import launched_world_size

    if launched_world_size() <= 1:
        sys.exit(code)
    import atexit
    import threading

    # the interpreter's own first exit steps, in its order: threading's exit hooks (which stop
    # idle thread pools) and the wait for non-daemon threads, then the atexit handlers
    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is not None and threading.current_thread() is threading.main_thread():
        shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


if __name__ == "__main__":
    exit_process(main())
