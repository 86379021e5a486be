"""`--launcher deepspeed`: the worker under DeepSpeed's own launcher (`deepspeed` CLI).

The job must name a DeepSpeed config with the HF flag ``--deepspeed``: a JSON file or a bundled
preset (zero1, zero2, zero3, zero2-offload, zero3-offload; see tx.core.deepspeed_config). The
command is ``python -m deepspeed.launcher.runner`` (what the ``deepspeed`` script runs) with
the same interpreter as tx, run by tx.core.launchtool (tx's exit codes, no traceback on Ctrl-C),
and ``--no_local_rank`` because the worker reads LOCAL_RANK from the environment and takes the
job file as its only argument.

Without ``--master-port`` the port is picked where the command runs (tx.core.launchtool), so
two jobs on one host do not both take DeepSpeed's default 29500.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tx.core.deepspeed_config import INSTALL_HINT, PRESETS, deepspeed_missing
from tx.core.errors import ConfigError, LaunchError
from tx.core.hookspecs import hookimpl
from tx.core.launcher import LAUNCHTOOL, Plan, ProcessLauncher, ProcessPlan, worker_argv
from tx.core.launchtool import PLACEHOLDER

_RESOURCES = re.compile(r"^[A-Za-z0-9_.-]+(:[0-9]+(,[0-9]+)*)?(@[A-Za-z0-9_.-]+(:[0-9]+(,[0-9]+)*)?)*$")


@dataclass(frozen=True)
class DeepSpeedOptions:
    num_gpus: int | None = field(default=None, metadata={
        "help": "Worker processes per node (DeepSpeed: accelerators per node; on CPUs the number of "
                "processes). Default: every accelerator DeepSpeed finds."})
    num_nodes: int | None = field(default=None, metadata={
        "help": "Number of nodes from the hostfile to use (default: all of them)."})
    hostfile: str | None = field(default=None, metadata={
        "help": "MPI-style hostfile ('worker-0 slots=8' lines) for multi-node jobs; DeepSpeed starts "
                "the other nodes over pdsh/ssh."})
    include: str | None = field(default=None, metadata={
        "help": "Only these resources, NODE[:SLOT,...][@NODE...], e.g. worker-0@worker-1:0,2 "
                "(not with --num-gpus/--num-nodes)."})
    exclude: str | None = field(default=None, metadata={
        "help": "All resources except these, same format as --include."})
    master_addr: str | None = field(default=None, metadata={
        "help": "Address of the rank-0 node (default: the first host of the hostfile, or 127.0.0.1)."})
    master_port: int | None = field(default=None, metadata={
        "help": "Rendezvous port on the rank-0 node. Default: a free port picked at launch."})


def validate_options(o: DeepSpeedOptions) -> None:
    """Checks of the flags alone; pure."""
    for flag, value in (("--num-gpus", o.num_gpus), ("--num-nodes", o.num_nodes)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} must be 1 or more, not {value}")
    if o.include and o.exclude:
        raise ConfigError("--include and --exclude cannot be used together", hint="give one of them")
    if (o.include or o.exclude) and (o.num_gpus is not None or o.num_nodes is not None):
        raise ConfigError("--include/--exclude cannot be combined with --num-gpus/--num-nodes",
                          hint="choose resources one way: by count or by name")
    for flag, value in (("--include", o.include), ("--exclude", o.exclude)):
        if value is not None and not _RESOURCES.match(value):
            raise ConfigError(f"{flag} {value!r} is not NODE[:SLOT,...][@NODE[:SLOT,...]...]",
                              hint="e.g. worker-0@worker-1:0,2")
    if o.master_port is not None and not 0 < o.master_port < 65536:
        raise ConfigError(f"--master-port must be a TCP port (1-65535), not {o.master_port}")


def runner_args(o: DeepSpeedOptions) -> list[str]:
    """Pure: the DeepSpeed runner's flags for these options."""
    args: list[str] = []
    if o.hostfile:
        args.append(f"--hostfile={o.hostfile}")
    if o.include:
        args.append(f"--include={o.include}")
    if o.exclude:
        args.append(f"--exclude={o.exclude}")
    if o.num_nodes is not None:
        args.append(f"--num_nodes={o.num_nodes}")
    if o.num_gpus is not None:
        args.append(f"--num_gpus={o.num_gpus}")
    if o.master_addr:
        args.append(f"--master_addr={o.master_addr}")
    args.append(f"--master_port={o.master_port if o.master_port is not None else PLACEHOLDER}")
    return args


class DeepSpeedLauncher(ProcessLauncher):
    name = "deepspeed"
    description = "Run the worker under DeepSpeed's launcher (ZeRO presets: --deepspeed zero2 ...)."
    options = DeepSpeedOptions

    def unavailable_reason(self) -> str | None:
        reason = deepspeed_missing()
        return f"{reason}; {INSTALL_HINT}" if reason else None

    def validate(self, job: Any, options: DeepSpeedOptions) -> None:
        validate_options(options)
        reason = deepspeed_missing()
        if reason:
            raise LaunchError(f"--launcher deepspeed cannot run: {reason}", hint=INSTALL_HINT)
        if not job.args.get("deepspeed"):
            raise ConfigError(
                "--launcher deepspeed needs a DeepSpeed config",
                hint=f"add --deepspeed with a JSON file or a preset: {', '.join(PRESETS)}",
            )
        if options.hostfile and not Path(options.hostfile).expanduser().is_file():
            raise ConfigError(f"--hostfile {options.hostfile!r} does not exist")

    def world_size(self, options: DeepSpeedOptions) -> int | None:
        if options.hostfile or options.include or options.exclude or options.num_gpus is None:
            return None  # DeepSpeed counts the resources at launch
        return options.num_gpus * (options.num_nodes or 1)

    def plan(self, job: Any, options: DeepSpeedOptions, job_file: Path) -> Plan:
        python, *worker = worker_argv(job_file)  # worker: -m tx.core.worker JOB_FILE
        argv = (python, "-m", LAUNCHTOOL, "deepspeed.launcher.runner", *runner_args(options), "--no_local_rank",
                "--module", *worker[1:])
        notes = [f"{LAUNCHTOOL} runs the deepspeed launcher (python -m deepspeed.launcher.runner) with tx's exit codes",
                 f"DeepSpeed config: {job.args.get('deepspeed')}",
                 "workers without CUDA train on CPUs with --use_cpu --ddp_backend gloo"]
        if options.master_port is None:
            notes.append(f"{PLACEHOLDER} becomes a free TCP port of the host where this runs")
        return ProcessPlan(argv=argv, notes=tuple(notes))


@hookimpl
def tx_register_launchers(registry: Any) -> None:
    registry.add(DeepSpeedLauncher())
