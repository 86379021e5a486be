"""`tx run` with a process launcher (local, torchrun, deepspeed, accelerate, xla) in two
processes, so the one that waits never imports torch, transformers or datasets.

- ``tx`` (light: the CLI and the plugins) starts ``python -m tx.core.stage --plan-fd N -- ARGS``
  through :func:`tx.core.process.run_group` (own session, signals forwarded, no orphans).
- That child resolves and validates the job exactly as an in-process `tx run` would (same
  ``tx: error:`` lines and exit codes, ``tx: note:`` lines), writes the job file, then:

  - local launcher (its plan is one worker of this interpreter): it *is* the worker and trains
    in-process, saving a second interpreter start and a second import of torch/transformers;
  - any other process launcher: it pickles the plan (and the secrets the workers need in their
    environment) into the pipe ``N`` and exits 0; ``tx`` then runs the plan with the launcher's
    ``launch()`` (torchrun's agent and the workers are processes of their own).

Nothing is validated or written by ``tx`` itself, and nothing trains before the job file is
written. Scheduler launchers (slurm, docker) return at once and `--dry-run` prints and exits, so
those stay in one process (tx.core.cli), as does a run whose caller captured its output
(:func:`output_reaches_child`).
"""

from __future__ import annotations

import os
import pickle
import sys
import threading
from typing import TYPE_CHECKING, Any

from tx.core.errors import LaunchError, TxError

if TYPE_CHECKING:
    from tx.core.plugins import Plugins

MODULE = "tx.core.stage"
#: how long `tx` waits for the rest of a handed-back plan once the child has exited
_DRAIN_SECONDS = 10.0


# --- the parent: `tx run` -------------------------------------------------------------------
def output_reaches_child() -> bool:
    """Whether a child's stdout/stderr (fds 1 and 2) are where this process writes. Not when a
    Python caller of ``tx.core.cli.main`` captured sys.stdout/sys.stderr: `tx run` then works in
    one process, so the caller still gets every line."""
    try:
        return sys.stdout.fileno() == 1 and sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError
        return False


def run(plugins: Plugins, run_args: list[str]) -> int:
    """Resolve, validate and write the job in a child, then run what it hands back (nothing
    for the local launcher: the child trained). Returns the shell-style exit code."""
    from tx.core.process import run_group

    read_fd, write_fd = os.pipe()
    chunks: list[bytes] = []
    reader = threading.Thread(target=_drain, args=(read_fd, chunks), name="tx-stage-plan", daemon=True)
    reader.start()
    argv = (sys.executable, "-m", MODULE, "--plan-fd", str(write_fd), "--", *run_args)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        code = run_group(argv, pass_fds=(write_fd,))
    finally:
        os.close(write_fd)  # every process of the job is gone (run_group): the reader sees EOF
        reader.join(_DRAIN_SECONDS)
        if not reader.is_alive():
            os.close(read_fd)
    if code != 0:
        return code
    if reader.is_alive():
        raise LaunchError("the job was prepared but its plan did not arrive", hint="run the same command again")
    if not chunks:  # the worker ran in the child
        return code
    handed = pickle.loads(b"".join(chunks))
    launcher = plugins.launchers.get(handed["launcher"])
    os.environ.update(handed["env"])  # secrets for the workers: never written to a file
    lock = handed.get("lock")  # the child took the output dir's lock in this process's name (runlock.py)
    if lock is None:
        return int(launcher.launch(handed["plan"]))
    from tx.core import runlock

    with runlock.kept(*lock):  # heartbeat while the job runs, released however it ends
        return int(launcher.launch(handed["plan"]))


def _drain(fd: int, chunks: list[bytes]) -> None:
    while True:
        data = os.read(fd, 65536)
        if not data:
            return
        chunks.append(data)


# --- the child: `python -m tx.core.stage --plan-fd N -- ARGS` -------------------------------
def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 3 or args[0] != "--plan-fd" or not args[1].isdigit() or args[2] != "--":
        print(f"usage: python -m {MODULE} --plan-fd FD -- TX_RUN_ARGS... (started by `tx run`)", file=sys.stderr)
        return 2
    plan_fd, run_args = int(args[1]), args[3:]
    from tx.core.process import watch_parent

    watch_parent()  # `tx` killed while this validates or (local launcher) trains: stop, leave nothing
    try:
        here = prepare(run_args, plan_fd)
    except TxError as exc:  # the same lines and codes as tx.core.cli.main
        print(f"tx: {exc.label}: {exc.one_line()}", file=sys.stderr, flush=True)
        return exc.exit_code
    except KeyboardInterrupt:
        print("tx: interrupted", file=sys.stderr, flush=True)
        return 130
    except Exception as exc:
        if os.environ.get("TX_DEBUG"):
            raise
        print(f"tx: internal error: {type(exc).__name__}: {exc} (set TX_DEBUG=1 for the traceback)",
              file=sys.stderr, flush=True)
        return 1
    if here is None:
        return 0
    from tx.core import worker

    from tx.core import runlock

    job_file, loaded, lock = here
    with runlock.kept(*lock):  # this process trains: it keeps the output dir's lock
        return worker.run(job_file, loaded)


def prepare(run_args: list[str], plan_fd: int) -> tuple[str, Plugins, Any] | None:
    """Resolve, validate, lock the output dir and write the job. Returns (job file, plugins,
    lock to release) when the worker is to run in this process; otherwise hands the plan (and
    the lock, for `tx` to release) to ``plan_fd`` and returns None."""
    from tx.core import plugins as plugin_loader
    from tx.core import run as runner
    from tx.core import runlock

    try:
        loaded = plugin_loader.load()  # -p modules arrive in TX_PLUGINS, as for workers
        flags = runner.split_tx_flags(run_args)
        resolved = runner.resolve(loaded, flags)
        for note in resolved.notes:
            print(f"tx: note: {note}", file=sys.stderr, flush=True)
        the_plan = runner.plan(resolved)
        job_file = resolved.job.job_file
        in_process = resolved.launcher.worker_in_process(the_plan, job_file)
        # One job per output dir (runlock.py), taken before anything is written, in the name of
        # the process that lives for the whole run: this one when it trains, else `tx` (which
        # waits for the launch tool) and which then releases it.
        holder = runlock.acquire(resolved.job.output_dir, resolved.job.job_id,
                                 pid=None if in_process else os.getppid())
        lock = (resolved.job.output_dir, holder)
        try:
            env = runner.write_job(resolved)
            if in_process:
                os.environ.update(env)
                return str(job_file), loaded, lock
            payload: dict[str, Any] = {"launcher": resolved.launcher.name, "plan": the_plan, "env": env, "lock": lock}
            _write_all(plan_fd, pickle.dumps(payload))
        except BaseException:
            runlock.release(*lock)
            raise
        return None
    finally:
        try:
            os.close(plan_fd)  # training must not hold it: `tx` waits for its end-of-file
        except OSError:
            pass


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


if __name__ == "__main__":
    sys.exit(main())
