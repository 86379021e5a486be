"""`python -m tx.core.worker <job file>`: what every launched process runs.

The job file is the only argument, so nothing is ever re-quoted through a shell.
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
    from tx.core import jobspec, plugins, trainer
    from tx.core.process import watch_parent

    watch_parent()  # no worker trains on after the `tx` that launched it died (kill -9 included)
    from tx.core.errors import Interrupted
    from tx.core.interrupt import SignalExit, exit_code_for, signal_name

    rank = os.environ.get("RANK", "0")
    prefix = "tx: " if rank == "0" else f"tx[rank {rank}]: "
    try:
        job = jobspec.read(job_file)
        if loaded is None or not set(job.plugins) <= {info.module for info in loaded.infos.values()}:
            loaded = plugins.load(extra_modules=job.plugins)
        task = loaded.tasks.get(job.task)
        trainer.run(task, job, loaded)
    except Interrupted as exc:  # every rank stops at the same step: rank 0 alone says so
        if rank == "0":
            print(f"tx: interrupted: {exc.one_line()}", file=sys.stderr, flush=True)
        return exc.exit_code
    except TxError as exc:
        print(f"{prefix}error: {exc.one_line()}", file=sys.stderr, flush=True)
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
