"""`--launcher accelerate`: the worker under `accelerate launch`, optionally with a config file
written by `accelerate config`.

Without ``--accelerate-config``, tx passes what the job implies: the number of processes
(``--multi_gpu`` when more than one: accelerate's multi-process launcher, which also runs on
CPUs), and ``--mixed_precision`` from ``--fp16``/``--bf16``. The process count is
``--nproc-per-node`` x ``--nnodes`` (accelerate's ``--num-processes``, the total, works too);
with neither nor a config file, a launch on this machine runs one worker per GPU, or per CPU
core when there is none. With a config file, only the flags
given on the command line are added (they override the file, as with accelerate itself); a
file whose mixed precision contradicts ``--fp16``/``--bf16`` fails before launch.

The command is ``python -m accelerate.commands.launch`` (what ``accelerate launch`` runs), run by
tx.core.launchtool (tx's exit codes, no traceback on Ctrl-C). Without ``--main-process-port``
the port is picked where the command runs (tx.core.launchtool).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tx.core.errors import ConfigError, LaunchError
from tx.core.hookspecs import hookimpl
from tx.core.launcher import LAUNCHTOOL, Plan, ProcessLauncher, ProcessPlan, worker_argv
from tx.core.launchtool import PLACEHOLDER
from tx.core.options import local_process_count


@dataclass(frozen=True)
class AccelerateOptions:
    nproc_per_node: int | None = field(default=None, metadata={
        "help": "Worker processes per machine. Default: the config file's value, else one per GPU of this "
                "machine, or one per CPU core."})
    nnodes: int | None = field(default=None, metadata={
        "aliases": ("num_machines",), "help": "Number of machines (accelerate's --num_machines)."})
    num_processes: int | None = field(default=None, metadata={
        "help": "Worker processes in total, all machines (accelerate's own count; "
                "--nproc-per-node x --nnodes)."})
    accelerate_config: str | None = field(default=None, metadata={
        "help": "An accelerate config file (from `accelerate config`); flags given here override it."})
    machine_rank: int | None = field(default=None, metadata={"help": "Rank of this machine (0 on the main one)."})
    main_process_ip: str | None = field(default=None, metadata={"help": "Address of the machine of rank 0."})
    main_process_port: int | None = field(default=None, metadata={
        "help": "Port on the machine of rank 0. Default: a free port picked at launch."})


def validate_options(o: AccelerateOptions) -> None:
    """Checks of the flags alone; pure."""
    for flag, value in (("--nproc-per-node", o.nproc_per_node), ("--num-processes", o.num_processes),
                        ("--nnodes", o.nnodes)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} must be 1 or more, not {value}")
    if o.num_processes is not None and o.nproc_per_node is not None \
            and o.num_processes != o.nproc_per_node * (o.nnodes or 1):
        raise ConfigError(f"--num-processes {o.num_processes} is not --nproc-per-node {o.nproc_per_node} x "
                          f"--nnodes {o.nnodes or 1}", hint="give one of the two counts")
    if o.machine_rank is not None and o.machine_rank < 0:
        raise ConfigError(f"--machine-rank must be 0 or more, not {o.machine_rank}")
    if o.machine_rank is not None and o.nnodes is not None and o.machine_rank >= o.nnodes:
        raise ConfigError(f"--machine-rank {o.machine_rank} is not a machine of --nnodes {o.nnodes}")
    if (o.nnodes or 1) > 1 and o.accelerate_config is None and not o.main_process_ip:
        raise ConfigError("several machines need --main-process-ip (the address of the machine of rank 0)")
    if o.main_process_port is not None and not 0 < o.main_process_port < 65536:
        raise ConfigError(f"--main-process-port must be a TCP port (1-65535), not {o.main_process_port}")


def job_precision(args: dict[str, Any]) -> str:
    """accelerate's name for the job's mixed precision."""
    if args.get("bf16"):
        return "bf16"
    if args.get("fp16"):
        return "fp16"
    return "no"


def config_conflicts(config: dict[str, Any], args: dict[str, Any]) -> list[str]:
    """Pure: what an accelerate config file says that the Trainer arguments contradict."""
    out = []
    mp = config.get("mixed_precision")
    mine = job_precision(args)
    if mp not in (None, "", mine):
        out.append(f"mixed_precision: {mp} but the Trainer arguments ask for {mine} "
                   f"(--bf16/--fp16 {'not given' if mine == 'no' else 'given'})")
    if config.get("distributed_type") == "DEEPSPEED" and not args.get("deepspeed"):
        out.append("distributed_type: DEEPSPEED but no --deepspeed config is given")
    return out


def total_processes(o: AccelerateOptions) -> int | None:
    """accelerate's --num_processes (all machines), or None to leave it to the config file."""
    if o.num_processes is not None:
        return o.num_processes
    if o.nproc_per_node is not None:
        return o.nproc_per_node * (o.nnodes or 1)
    return None


def launch_args(o: AccelerateOptions, args: dict[str, Any]) -> list[str]:
    """Pure: `accelerate launch` flags for these options and the job's HF arguments."""
    out: list[str] = []
    if o.accelerate_config:
        out.append(f"--config_file={o.accelerate_config}")
    else:
        out += [f"--num_machines={o.nnodes or 1}", f"--mixed_precision={job_precision(args)}",
                "--dynamo_backend=no"]
        if (total_processes(o) or 1) > 1:
            out.append("--multi_gpu")  # accelerate's multi-process launcher (torchrun); CPUs too
    if total_processes(o) is not None:
        out.append(f"--num_processes={total_processes(o)}")
    if o.accelerate_config and o.nnodes is not None:
        out.append(f"--num_machines={o.nnodes}")
    if o.machine_rank is not None:
        out.append(f"--machine_rank={o.machine_rank}")
    if o.main_process_ip:
        out.append(f"--main_process_ip={o.main_process_ip}")
    out.append(f"--main_process_port={o.main_process_port if o.main_process_port is not None else PLACEHOLDER}")
    return out


class AccelerateLauncher(ProcessLauncher):
    name = "accelerate"
    description = "Run the worker under `accelerate launch` (optionally with an accelerate config file)."
    options = AccelerateOptions

    def unavailable_reason(self) -> str | None:
        import importlib.util

        if importlib.util.find_spec("accelerate") is None:
            return "accelerate is not installed (pip install accelerate)"
        return None

    def complete_options(self, options: AccelerateOptions, given: set[str]) -> tuple[AccelerateOptions, list[str]]:
        if options.accelerate_config or total_processes(options) is not None:
            return options, []
        count, why = local_process_count()
        return replace(options, nproc_per_node=count), [
            f"--nproc-per-node {count}: {why}; pass --nproc-per-node to choose"]

    def validate(self, job: Any, options: AccelerateOptions) -> None:
        validate_options(options)
        reason = self.unavailable_reason()
        if reason:
            raise LaunchError(f"--launcher accelerate cannot run: {reason}")
        if options.accelerate_config:
            config = _read_config(options.accelerate_config)
            problems = config_conflicts(config, job.args)
            if problems:
                raise ConfigError(
                    f"the accelerate config {options.accelerate_config} contradicts the Trainer arguments: "
                    + "; ".join(problems),
                    hint="change the config file or the flags so they agree",
                )

    def world_size(self, options: AccelerateOptions) -> int | None:
        if options.accelerate_config and total_processes(options) is None:
            return None
        return total_processes(options) or 1

    def plan(self, job: Any, options: AccelerateOptions, job_file: Path) -> Plan:
        python, *worker = worker_argv(job_file)  # worker: -m tx.core.worker JOB_FILE
        argv = (python, "-m", LAUNCHTOOL, "accelerate.commands.launch", *launch_args(options, job.args), *worker)
        notes = [f"{LAUNCHTOOL} runs `accelerate launch` (python -m accelerate.commands.launch) with tx's exit codes",
                 "workers without CUDA train on CPUs with --use_cpu --ddp_backend gloo"]
        if options.main_process_port is None:
            notes.append(f"{PLACEHOLDER} becomes a free TCP port of the host where this runs")
        return ProcessPlan(argv=argv, notes=tuple(notes))


def _read_config(path: str) -> dict[str, Any]:
    """An accelerate config file (YAML or JSON, as `accelerate config` writes them)."""
    import yaml

    p = Path(path).expanduser()
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"--accelerate-config {path!r} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read --accelerate-config {path!r}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--accelerate-config {path!r} is not valid YAML/JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--accelerate-config {path!r} is not a mapping of accelerate settings")
    return data


@hookimpl
def tx_register_launchers(registry: Any) -> None:
    registry.add(AccelerateLauncher())
