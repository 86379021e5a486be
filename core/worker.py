"""`python -m tx.core.worker <job file>`: what every launched process runs.

The job file is the only argument, so nothing is ever re-quoted through a shell.
"""

from __future__ import annotations

import os
import sys

from tx.core.errors import TxError


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 1:
        print("usage: python -m tx.core.worker <tx-job.yaml>", file=sys.stderr)
        return 2
    from tx.core import jobspec, plugins, trainer

    try:
        job = jobspec.read(argv[0])
        loaded = plugins.load(extra_modules=job.plugins)
        task = loaded.tasks.get(job.task)
        trainer.run(task, job, loaded)
    except TxError as exc:
        rank = os.environ.get("RANK", "0")
        prefix = "tx: " if rank == "0" else f"tx[rank {rank}]: "
        print(f"{prefix}error: {exc.one_line()}", file=sys.stderr, flush=True)
        return exc.exit_code
    except KeyboardInterrupt:
        print("tx: interrupted", file=sys.stderr, flush=True)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
