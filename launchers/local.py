"""`--launcher local`: one worker process on this machine (the default)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from tx.core.hookspecs import hookimpl
from tx.core.launcher import Launcher, NoOptions, Plan, ProcessPlan
from tx.core.process import run_group


def worker_argv(job_file: Path, python: str | None = None) -> tuple[str, ...]:
    """The one command every launcher ends up running, per process."""
    return (python or sys.executable, "-m", "tx.core.worker", str(job_file))


class LocalLauncher(Launcher):
    name = "local"
    description = "Run the worker in one process on this machine (default)."
    options = NoOptions

    def plan(self, job: Any, options: Any, job_file: Path) -> Plan:
        return ProcessPlan(argv=worker_argv(job_file))

    def launch(self, plan: Plan) -> int:
        assert isinstance(plan, ProcessPlan)
        return run_group(plan.argv, dict(plan.env), plan.cwd)


@hookimpl
def tx_register_launchers(registry: Any) -> None:
    registry.add(LocalLauncher())
