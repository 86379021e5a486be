"""`--launcher torchrun`: the worker in N processes per node through `torch.distributed.run`
(run by tx.core.launchtool: the worker's exit code, no torchrun traceback on Ctrl-C).

Rendezvous, from the flags given:

- nothing (one node): ``--standalone``. torchrun's rendezvous store binds a port the kernel
  picks, so two jobs on one host never collide and ``plan()`` needs no port (it stays pure).
- ``--rdzv-endpoint HOST:PORT``: elastic c10d rendezvous (multi-node; every node runs the same
  command, ``--rdzv-id`` tells jobs apart).
- ``--master-addr``/``--master-port``: torchrun's static rendezvous; several nodes need
  ``--node-rank`` too. ``--master-port`` alone on one node uses 127.0.0.1.

Without ``--nproc-per-node``, a launch on this machine runs one worker per GPU, or one per CPU
core when there is no GPU (:func:`tx.core.options.local_process_count`); the count is announced
and recorded in the job file. On machines without CUDA the workers train on CPUs with gloo
(tx.core.distributed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tx.core.errors import ConfigError, LaunchError
from tx.core.hookspecs import hookimpl
from tx.core.launcher import LAUNCHTOOL, Plan, ProcessLauncher, ProcessPlan, worker_argv
from tx.core.options import local_process_count

_NPROC_WORDS = ("auto", "cpu", "gpu", "xpu")
_NNODES = re.compile(r"^[1-9][0-9]*(:[1-9][0-9]*)?$")
_ENDPOINT = re.compile(r"^\[?[A-Za-z0-9_.:-]+\]?(:[0-9]{1,5})?$")


@dataclass(frozen=True)
class TorchrunOptions:
    nproc_per_node: str | None = field(default=None, metadata={
        "help": "Worker processes per node: a number, or gpu/cpu/auto (one per GPU, per CPU core, "
                "GPUs if any else CPU cores). Default: one per GPU of this machine, else one per CPU core."})
    nnodes: str = field(default="1", metadata={
        "help": "Number of nodes, or MIN:MAX for an elastic job (with --rdzv-endpoint)."})
    node_rank: int | None = field(default=None, metadata={
        "help": "Rank of this node (0 .. nnodes-1); needed by static rendezvous on several nodes."})
    rdzv_backend: str | None = field(default=None, metadata={
        "help": "Rendezvous backend for multi-node jobs (c10d, etcd, etcd-v2); c10d when "
                "--rdzv-endpoint is given."})
    rdzv_endpoint: str | None = field(default=None, metadata={
        "help": "HOST[:PORT] of the rendezvous backend; the same on every node."})
    rdzv_id: str | None = field(default=None, metadata={
        "help": "Job id shared by the nodes of one job (torchrun's default: none)."})
    max_restarts: int = field(default=0, metadata={
        "help": "Restart the worker group this many times after a worker fails (resumes from the "
                "last checkpoint)."})
    master_addr: str | None = field(default=None, metadata={
        "help": "Address of the rank-0 node for static rendezvous (default 127.0.0.1)."})
    master_port: int | None = field(default=None, metadata={
        "help": "Port on the rank-0 node for static rendezvous. Not given on one node: a free port "
                "is picked (torchrun --standalone)."})


def validate_options(o: TorchrunOptions) -> None:
    """Checks of the flags alone; pure."""
    nproc = nproc_of(o)
    if not (nproc.isdigit() and int(nproc) > 0) and nproc not in _NPROC_WORDS:
        raise ConfigError(f"--nproc-per-node must be a positive number or one of {', '.join(_NPROC_WORDS)}, "
                          f"not {nproc!r}")
    if not _NNODES.match(o.nnodes):
        raise ConfigError(f"--nnodes must be a positive number or MIN:MAX, not {o.nnodes!r}")
    lo, _, hi = o.nnodes.partition(":")
    if hi and int(hi) < int(lo):
        raise ConfigError(f"--nnodes {o.nnodes}: MAX is smaller than MIN")
    multi_node = o.nnodes != "1"
    if o.max_restarts < 0:
        raise ConfigError(f"--max-restarts must be 0 or more, not {o.max_restarts}")
    if o.master_port is not None and not 0 < o.master_port < 65536:
        raise ConfigError(f"--master-port must be a TCP port (1-65535), not {o.master_port}")
    if o.rdzv_endpoint is not None and not _ENDPOINT.match(o.rdzv_endpoint):
        raise ConfigError(f"--rdzv-endpoint must be HOST or HOST:PORT, not {o.rdzv_endpoint!r}")
    static = o.master_addr is not None or o.master_port is not None
    if o.rdzv_endpoint and static:
        raise ConfigError("--rdzv-endpoint and --master-addr/--master-port are two ways to meet; give one",
                          hint="use --rdzv-endpoint for c10d rendezvous or --master-addr/--master-port for static")
    if (o.rdzv_backend or o.rdzv_id) and not o.rdzv_endpoint:
        raise ConfigError("--rdzv-backend and --rdzv-id need --rdzv-endpoint HOST:PORT")
    if ":" in o.nnodes and not o.rdzv_endpoint:
        raise ConfigError(f"an elastic --nnodes {o.nnodes} needs --rdzv-endpoint HOST:PORT")
    if multi_node and not o.rdzv_endpoint:
        if o.master_addr is None or o.master_port is None:
            raise ConfigError(
                f"--nnodes {o.nnodes} needs to know where the nodes meet",
                hint="give --rdzv-endpoint HOST:PORT (the same on every node), or --master-addr, "
                     "--master-port and --node-rank",
            )
        if o.node_rank is None:
            raise ConfigError(f"--nnodes {o.nnodes} with --master-addr needs --node-rank (0 on the master node)")
    if o.node_rank is not None:
        if o.node_rank < 0 or (not multi_node and o.node_rank != 0):
            raise ConfigError(f"--node-rank {o.node_rank} is not a node of --nnodes {o.nnodes}")
        if o.nnodes.isdigit() and o.node_rank >= int(o.nnodes):
            raise ConfigError(f"--node-rank {o.node_rank} is not a node of --nnodes {o.nnodes}",
                              hint=f"node ranks go from 0 to {int(o.nnodes) - 1}")


def nproc_of(o: TorchrunOptions) -> str:
    """--nproc-per-node as torchrun takes it; not given (a job planned for another machine, e.g.
    an inner launcher with no count): 1, torchrun's own default."""
    return "1" if o.nproc_per_node is None else str(o.nproc_per_node)


def torchrun_args(o: TorchrunOptions) -> list[str]:
    """Pure: torchrun's own flags for these options."""
    args = [f"--nnodes={o.nnodes}", f"--nproc-per-node={nproc_of(o)}"]
    if o.rdzv_endpoint:
        args += [f"--rdzv-backend={o.rdzv_backend or 'c10d'}", f"--rdzv-endpoint={o.rdzv_endpoint}"]
        if o.rdzv_id:
            args.append(f"--rdzv-id={o.rdzv_id}")
        if o.node_rank is not None:
            args.append(f"--node-rank={o.node_rank}")
    elif o.master_addr is not None or o.master_port is not None:
        args += [f"--master-addr={o.master_addr or '127.0.0.1'}", f"--master-port={o.master_port or 29500}"]
        args.append(f"--node-rank={o.node_rank or 0}")
    else:
        args.append("--standalone")
    if o.max_restarts:
        args.append(f"--max-restarts={o.max_restarts}")
    return args


class TorchrunLauncher(ProcessLauncher):
    name = "torchrun"
    description = "Run N worker processes per node with torchrun (torch.distributed.run)."
    options = TorchrunOptions

    def unavailable_reason(self) -> str | None:
        import importlib.util

        if importlib.util.find_spec("torch") is None:
            return "torch is not installed (pip install torch)"
        return None

    def complete_options(self, options: TorchrunOptions, given: set[str]) -> tuple[TorchrunOptions, list[str]]:
        if options.nproc_per_node is not None:
            return options, []
        count, why = local_process_count()
        return replace(options, nproc_per_node=str(count)), [
            f"--nproc-per-node {count}: {why}; pass --nproc-per-node to choose"]

    def validate(self, job: Any, options: TorchrunOptions) -> None:
        validate_options(options)
        reason = self.unavailable_reason()
        if reason:
            raise LaunchError(f"--launcher torchrun cannot run here: {reason}")

    def world_size(self, options: TorchrunOptions) -> int | None:
        nproc = nproc_of(options)
        if nproc.isdigit() and options.nnodes.isdigit():
            return int(nproc) * int(options.nnodes)
        return None

    def plan(self, job: Any, options: TorchrunOptions, job_file: Path) -> Plan:
        python, *worker = worker_argv(job_file)  # worker: -m tx.core.worker JOB_FILE
        argv = (python, "-m", LAUNCHTOOL, "torch.distributed.run", *torchrun_args(options), *worker)
        notes = [f"{LAUNCHTOOL} runs torchrun (python -m torch.distributed.run) with tx's exit codes"]
        if not (options.rdzv_endpoint or options.master_addr or options.master_port):
            notes.append("--standalone: the rendezvous binds a free port chosen at launch")
        notes.append("workers without CUDA train on CPUs with --use_cpu --ddp_backend gloo (set --ddp_backend to override)")
        return ProcessPlan(argv=argv, notes=tuple(notes))


@hookimpl
def tx_register_launchers(registry: Any) -> None:
    registry.add(TorchrunLauncher())
