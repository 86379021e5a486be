"""`--launcher local`: one worker process on this machine (the default)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tx.core.hookspecs import hookimpl
from tx.core.launcher import NoOptions, Plan, ProcessLauncher, ProcessPlan, worker_argv

__all__ = ["LocalLauncher", "worker_argv"]


class LocalLauncher(ProcessLauncher):
    name = "local"
    description = "Run the worker in one process on this machine (default)."
    options = NoOptions

    def world_size(self, options: Any) -> int | None:
        return 1

    def plan(self, job: Any, options: Any, job_file: Path) -> Plan:
        return ProcessPlan(argv=worker_argv(job_file))


@hookimpl
def tx_register_launchers(registry: Any) -> None:
    registry.add(LocalLauncher())
