"""`--launcher deepspeed`: the worker under DeepSpeed's own launcher (`deepspeed` CLI).

The job names a DeepSpeed config with the HF flag ``--deepspeed``: a JSON file or a bundled
preset (zero1, zero2, zero3, zero2-offload, zero3-offload; see tx.core.deepspeed_config).
Without it the launcher uses the ``zero2`` preset (:data:`DEFAULT_PRESET`, announced with a
``tx: note:`` and written to the job file), and without ``--nproc-per-node`` (alias
``--num-gpus``) one worker per GPU, or per CPU core when there is none. The
command is ``python -m deepspeed.launcher.runner`` (what the ``deepspeed`` script runs) with
the same interpreter as tx, run by tx.core.launchtool (tx's exit codes, no traceback on Ctrl-C),
and ``--no_local_rank`` because the worker reads LOCAL_RANK from the environment and takes the
job file as its only argument.

Without ``--master-port`` the port is picked where the command runs (tx.core.launchtool), so
two jobs on one host do not both take DeepSpeed's default 29500.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tx.core.deepspeed_config import DEFAULT_PRESET, INSTALL_HINT, PRESETS, deepspeed_missing, preset_path
from tx.core.errors import ConfigError, LaunchError
from tx.core.hookspecs import hookimpl
from tx.core.launcher import LAUNCHTOOL, Plan, ProcessLauncher, ProcessPlan, worker_argv
from tx.core.launchtool import PLACEHOLDER
from tx.core.options import local_process_count

_RESOURCES = re.compile(r"^[A-Za-z0-9_.-]+(:[0-9]+(,[0-9]+)*)?(@[A-Za-z0-9_.-]+(:[0-9]+(,[0-9]+)*)?)*$")


@dataclass(frozen=True)
class DeepSpeedOptions:
    nproc_per_node: int | None = field(default=None, metadata={
        "aliases": ("num_gpus",),
        "help": "Worker processes per node (DeepSpeed's --num_gpus: accelerators per node; on CPUs the "
                "number of processes). Default: one per GPU of this machine, else one per CPU core "
                "(with --hostfile/--include/--exclude: what DeepSpeed finds)."})
    nnodes: int | None = field(default=None, metadata={
        "aliases": ("num_nodes",),
        "help": "Number of nodes from the hostfile to use (DeepSpeed's --num_nodes; default: all of them)."})
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
    for flag, value in (("--nproc-per-node", o.nproc_per_node), ("--nnodes", o.nnodes)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} must be 1 or more, not {value}")
    if o.include and o.exclude:
        raise ConfigError("--include and --exclude cannot be used together", hint="give one of them")
    if (o.include or o.exclude) and (o.nproc_per_node is not None or o.nnodes is not None):
        raise ConfigError("--include/--exclude cannot be combined with --nproc-per-node/--nnodes",
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
    if o.nnodes is not None:
        args.append(f"--num_nodes={o.nnodes}")
    if o.nproc_per_node is not None:
        args.append(f"--num_gpus={o.nproc_per_node}")
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

    def complete_options(self, options: DeepSpeedOptions, given: set[str]) -> tuple[DeepSpeedOptions, list[str]]:
        if options.nproc_per_node is not None or options.hostfile or options.include or options.exclude:
            return options, []
        count, why = local_process_count()
        return replace(options, nproc_per_node=count), [
            f"--nproc-per-node {count}: {why}; pass --nproc-per-node (or --num-gpus) to choose"]

    def adjust_args(self, args: dict[str, Any], options: DeepSpeedOptions, *, known: set[str],
                    given: set[str]) -> tuple[dict[str, Any], list[str]]:
        if args.get("deepspeed") or "deepspeed" in given:
            return dict(args), []
        return {**args, "deepspeed": DEFAULT_PRESET}, [
            f"--deepspeed {DEFAULT_PRESET}: no DeepSpeed config given, so the ZeRO stage 2 preset "
            f"({preset_path(DEFAULT_PRESET).name} shipped with tx; batch, precision and optimizer values from "
            f"the Trainer arguments); pass --deepspeed FILE or one of {', '.join(PRESETS)} to choose"]

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
        if options.hostfile or options.include or options.exclude or options.nproc_per_node is None:
            return None  # DeepSpeed counts the resources at launch
        return options.nproc_per_node * (options.nnodes or 1)

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
