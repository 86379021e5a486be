"""The Launcher interface: options -> pure plan -> launch.

``plan()`` is pure (no subprocess, no I/O, no mutation) and returns a frozen :class:`Plan`
whose ``render()`` is what ``--dry-run`` prints. ``launch()`` executes it.
Scheduler launchers (slurm, docker) also answer ``status``/``logs``/``cancel`` for their jobs.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Iterator

if TYPE_CHECKING:
    from tx.core.jobspec import JobSpec


@dataclass(frozen=True)
class NoOptions:
    """For launchers without options."""


class Plan:
    """A frozen description of what launch() will do. Subclasses are frozen dataclasses."""

    def render(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True)
class ProcessPlan(Plan):
    """Start one command (which starts the workers) and wait for it."""

    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    cwd: str | None = None
    notes: tuple[str, ...] = ()

    def render(self) -> str:
        lines = [f"# {note}" for note in self.notes]
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env)
        cmd = " ".join(shlex.quote(a) for a in self.argv)
        prefix = f"cd {shlex.quote(self.cwd)} && " if self.cwd else ""
        lines.append(prefix + (f"{env} " if env else "") + cmd)
        return "\n".join(lines)


def command_problem(argv: list[str], timeout: float) -> str | None:
    """Run a short probe command (``scontrol ping``): None when it exits 0, else one line saying
    why not (its message, a missing program, or no answer within ``timeout`` seconds)."""
    import subprocess

    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        return f"{argv[0]} is not on PATH"
    except subprocess.TimeoutExpired:
        return f"`{' '.join(argv)}` did not answer within {timeout:g} s"
    except OSError as exc:
        return f"cannot run {argv[0]}: {exc.strerror or exc}"
    if done.returncode == 0:
        return None
    lines = [line.strip(" *") for line in (done.stdout + "\n" + done.stderr).splitlines() if line.strip(" *")]
    said = next((line for line in lines if "fatal" in line.lower() or "down" in line.lower()), lines[-1] if lines else "")
    return f"`{' '.join(argv)}` failed (exit {done.returncode}){': ' + said if said else ''}"


#: ``python -m tx.core.launchtool MODULE ARGS``: a launch tool with tx's exit codes (launchtool.py)
LAUNCHTOOL = "tx.core.launchtool"


def worker_argv(job_file: Path | str, python: str | None = None) -> tuple[str, ...]:
    """The one command every launched process ends up running."""
    import sys

    return (python or sys.executable, "-m", "tx.core.worker", str(job_file))


@dataclass(frozen=True)
class JobStatus:
    """What `tx status` shows for one scheduled job."""

    job_id: str
    state: str  # PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, ...
    elapsed: str = ""
    nodes: str = ""
    restarts: int = 0
    exit_code: int | None = None
    extra: dict[str, str] = field(default_factory=dict)


class Launcher:
    """Base class for launcher plugins; register an instance in ``tx_register_launchers``."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: a frozen dataclass; each field becomes a kebab-case flag (`nproc_per_node` -> `--nproc-per-node`)
    options: ClassVar[type] = NoOptions
    #: True for launchers that hand the job to a scheduler and return (slurm, docker)
    scheduler: ClassVar[bool] = False

    def unavailable_reason(self) -> str | None:
        """Why this launcher cannot run here (a missing tool or package), or None. Must be cheap:
        `tx run --help` and validation call it; it does not ask any engine."""
        return None

    def complete_options(self, options: Any, given: set[str]) -> tuple[Any, list[str]]:
        """The options with the defaults that depend on this machine filled in (the process
        count of a launch here), and one note per value chosen (`tx run` prints them as
        ``tx: note:``). Called only when the job launches on this machine, so the job file
        records the values that really run; ``given`` names the options the user set."""
        return options, []

    def check_usable(self, timeout: float = 3.0) -> str | None:
        """Why this launcher cannot run here *now*, found by asking its engine (a scheduler's
        controller, a container daemon) and giving up after ``timeout`` seconds; None when it
        answers. `tx env` calls it for every launcher in parallel. The default is
        :meth:`unavailable_reason` (process launchers have no engine to ask)."""
        return self.unavailable_reason()

    def adjust_args(self, args: dict[str, Any], options: Any, *, known: set[str],
                    given: set[str]) -> tuple[dict[str, Any], list[str]]:
        """The job's HF arguments as this launcher needs them, and one note per change (`tx run`
        prints them as ``tx: note:``); no side effects. Called before validation and before the
        job is written, so the job spec shows the values that really run (the xla launcher swaps
        the fused AdamW default for one that takes XLA tensors). ``args`` holds the non-default
        values, ``known`` every HF argument the task accepts, ``given`` those the user set
        (command line, config file or rerun job): a launcher should not override those."""
        return dict(args), []

    def validate(self, job: JobSpec, options: Any) -> None:
        """Checks before launch that need the job and the options; raise ConfigError."""

    def world_size(self, options: Any) -> int | None:
        """How many worker processes the options ask for, when known before launch (used to
        check a DeepSpeed config's train_batch_size); None when only the run can tell."""
        return None

    def plan(self, job: JobSpec, options: Any, job_file: Path) -> Plan:
        """Pure: turn the job and options into a frozen Plan."""
        raise NotImplementedError

    def launch(self, plan: Plan) -> int:
        """Execute the plan; return the exit code (schedulers: 0 once submitted)."""
        raise NotImplementedError

    # Scheduler launchers only -------------------------------------------------------------
    def status(self, record: dict[str, Any]) -> JobStatus:
        raise NotImplementedError

    def logs(self, record: dict[str, Any], follow: bool = False) -> Iterator[str]:
        raise NotImplementedError

    def cancel(self, record: dict[str, Any]) -> str:
        raise NotImplementedError


class ProcessLauncher(Launcher):
    """A launcher whose plan is one local command (a :class:`ProcessPlan`) that starts the
    workers: local, torchrun, deepspeed, accelerate, xla. ``launch()`` runs it in its own
    session, streams its output, forwards Ctrl-C/SIGTERM and leaves no process behind
    (:func:`tx.core.process.run_group`).

    `tx run` with such a launcher only waits, so it never imports torch: a child process
    resolves, validates and writes the job and hands the plan back, and `tx` runs it
    (tx.core.stage). ``plan()`` and ``launch()`` must therefore work in a process that loaded
    the plugins but never ran ``validate()``, and the plan must pickle."""

    def launch(self, plan: Plan) -> int:
        if not isinstance(plan, ProcessPlan):
            raise TypeError(f"{type(self).__name__}.launch needs a ProcessPlan, got {type(plan).__name__}")
        from tx.core.process import run_group

        return run_group(plan.argv, dict(plan.env), plan.cwd)

    def worker_in_process(self, plan: Plan, job_file: Path | str) -> bool:
        """True when running ``plan`` means running one worker of this interpreter on
        ``job_file``, with tx's environment and working directory (the local launcher's plan):
        `tx run` then trains in the process that validated the job instead of starting another
        Python that imports torch and transformers again (tx.core.stage)."""
        return (type(self).launch is ProcessLauncher.launch and isinstance(plan, ProcessPlan)
                and plan.argv == worker_argv(job_file) and not plan.env and plan.cwd is None)
