"""`--launcher slurm`: submit the job to Slurm with one self-contained sbatch script.

The script holds every placement choice as ``#SBATCH`` lines, then runs one inner process
launcher per node (``srun --ntasks-per-node=1``): ``local`` (one worker), ``torchrun`` or
``deepspeed``. Each of them ends up running ``python -m tx.core.worker <job file>``: the job file
is the only thing handed over, so no training argument is ever pasted into the script.

The process layout uses the words of every other launcher: ``--nnodes`` (alias ``--nodes``) and
``--nproc-per-node`` (default: the GPUs per node, or 1), passed to the inner launcher.
``#SBATCH --cpus-per-task`` follows from it unless given (:func:`default_cpus_per_task`).

Preemption and time limits (``--requeue``, the default): Slurm sends the preemption signal
(``--preempt-signal``, default SIGUSR2) to the batch shell ``--signal-grace`` seconds before the
time limit (``#SBATCH --signal=B:USR2@N``). The script passes it to the job step; the workers
save a checkpoint at their next step and stop; the script then requeues the job (``scontrol
requeue``) at most ``--max-requeues`` times, counted with ``SLURM_RESTART_COUNT``. A restarted
job resumes from the newest checkpoint of its output_dir (the script exports
``TX_RESTART_COUNT``, see tx.core.trainer). Launch tools in the step run with SIGUSR1 and
SIGUSR2 ignored (only the workers act on them), because Slurm delivers a step's signal to every
process of the step and an unprepared torchrun would die of it. SIGUSR2 is the default because
some NCCL releases install their own SIGUSR1 handler (submitit moved to USR2 for that reason).

``plan()`` is pure: the script is text built from the job, the options and the interpreter
path. ``launch``/``status``/``logs``/``cancel`` call sbatch/scontrol/scancel (accounting is
not needed: no sacct).
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Literal

from tx.core.errors import ConfigError, LaunchError
from tx.core.hookspecs import hookimpl
from tx.core.launcher import JobStatus, Launcher, Plan, ProcessPlan

if TYPE_CHECKING:
    from tx.core.jobspec import JobSpec
    from tx.core.registry import LauncherRegistry

#: the sub-directory of output_dir that holds the scripts, logs and exit codes of Slurm jobs
SLURM_DIR = "tx-slurm"
#: rendezvous ports are derived from the job id: PORT_BASE + id % PORT_SPAN
PORT_BASE = 20000
PORT_SPAN = 20000
#: shell variables the batch script sets; they may appear in the per-node command
HEAD = "${TX_HEAD}"
PORT = "${TX_PORT}"
JOB_ID = "${SLURM_JOB_ID}"
_SCRIPT_VARS = (HEAD, PORT, JOB_ID)
#: Slurm states after which nothing more happens to a job
TERMINAL = frozenset({
    "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "OUT_OF_MEMORY",
    "BOOT_FAIL", "DEADLINE", "SPECIAL_EXIT", "REVOKED",
})
#: inner launchers that can span several nodes under srun
MULTI_NODE_INNER = ("torchrun", "deepspeed")
#: inner-launcher options the Slurm launcher sets itself
_MANAGED_INNER = {
    "torchrun": ("nnodes", "node_rank", "rdzv_backend", "rdzv_endpoint", "rdzv_id", "master_addr", "master_port"),
    "deepspeed": ("nnodes", "hostfile", "include", "exclude", "master_addr"),
}
#: CPUs per worker process when --cpus-per-task is not given: with GPUs, a main thread and the
#: DataLoader workers feeding a GPU; without, each process trains on its own core
CPUS_PER_GPU_PROCESS = 4
CPUS_PER_CPU_PROCESS = 1
#: where a path is on the node's own disk or memory: another node does not see it
NODE_LOCAL = ("/tmp", "/var/tmp", "/dev/shm")
#: sbatch options tx writes itself, and the flag to use instead
_MANAGED_SBATCH = {
    "--nodes": "--nnodes", "-N": "--nnodes", "--ntasks-per-node": "(one task per node is how tx runs)",
    "--ntasks": "(one task per node is how tx runs)", "-n": "(one task per node is how tx runs)",
    "--output": "(tx writes the log to <output_dir>/tx-slurm/)", "-o": "(tx writes the log to <output_dir>/tx-slurm/)",
    "--error": "(tx writes the log to <output_dir>/tx-slurm/)", "-e": "(tx writes the log to <output_dir>/tx-slurm/)",
    "--open-mode": "(tx appends, so a requeued job keeps its earlier output)",
    "--chdir": "(the job runs in output_dir)", "-D": "(the job runs in output_dir)",
    "--signal": "--signal-grace and --preempt-signal", "--requeue": "--requeue", "--no-requeue": "--no-requeue",
    "--job-name": "--job-name", "-J": "--job-name", "--partition": "--partition", "-p": "--partition",
    "--account": "--account", "-A": "--account", "--qos": "--qos", "-q": "--qos",
    "--time": "--time", "-t": "--time", "--mem": "--mem", "--cpus-per-task": "--cpus-per-task",
    "-c": "--cpus-per-task", "--gpus-per-node": "--gpus-per-node", "--constraint": "--constraint",
    "-C": "--constraint", "--exclusive": "--exclusive", "--parsable": "(tx reads the job id itself)",
    "--wrap": "(tx writes the script)", "--wait": "--wait", "-W": "--wait",
}

_TIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")
_MEM = re.compile(r"^\d+[KMGT]?$", re.IGNORECASE)
_GPUS = re.compile(r"^(?:[A-Za-z0-9_.-]+:)?\d+$")
_WORD = re.compile(r"^[A-Za-z0-9_.,:+@%=/\[\]|&!*-]+$")  # a #SBATCH value: no spaces, quotes or shell syntax
_SAFE_PATH = re.compile(r"^[^\s'\"\\`$]+$")
_PLAIN = re.compile(r"^[A-Za-z0-9_@%+=:,./-]*$")


@dataclass(frozen=True)
class SlurmOptions:
    nnodes: int = field(default=1, metadata={
        "aliases": ("nodes",), "help": "Number of nodes (#SBATCH --nodes); one inner launcher runs on each."})
    nproc_per_node: int | None = field(default=None, metadata={
        "help": "Worker processes per node, passed to the inner launcher. Default: --gpus-per-node, or 1."})
    gpus_per_node: str = field(default="0", metadata={
        "help": "GPUs on each node, N or TYPE:N (#SBATCH --gpus-per-node); also the default worker "
                "processes per node."})
    cpus_per_task: int | None = field(default=None, metadata={
        "help": "CPUs for each node's task, shared by all its worker processes. Default: 4 per worker "
                "process with GPUs, 1 per worker process without."})
    mem: str | None = field(default=None, metadata={"help": "Memory per node, e.g. 64G (#SBATCH --mem)."})
    time: str | None = field(default=None, metadata={
        "help": "Time limit: MINUTES, HH:MM:SS or D-HH:MM:SS (#SBATCH --time)."})
    partition: str | None = field(default=None, metadata={"help": "Partition (queue) to submit to."})
    account: str | None = field(default=None, metadata={"help": "Account to charge."})
    qos: str | None = field(default=None, metadata={"help": "Quality of service."})
    constraint: str | None = field(default=None, metadata={"help": "Node features, e.g. a100 or 'a100|h100'."})
    exclusive: bool = field(default=False, metadata={"help": "Take the nodes exclusively."})
    job_name: str | None = field(default=None, metadata={"help": "Slurm job name (default: tx-TASK)."})
    requeue: bool = field(default=True, metadata={
        "help": "Before the time limit or on preemption (--preempt-signal), save a checkpoint and requeue "
                "the job; it resumes from that checkpoint."})
    preempt_signal: Literal["USR2", "USR1"] = field(default="USR2", metadata={
        "help": "Signal Slurm sends before the time limit (#SBATCH --signal=B:SIG@grace), and that "
                "`scancel --signal=SIG --batch` sends on preemption. USR2: some NCCL releases take USR1."})
    signal_grace: int = field(default=300, metadata={
        "help": "Seconds before the time limit at which Slurm sends --preempt-signal (it checks about once "
                "a minute, so allow a step, a checkpoint and a minute)."})
    max_requeues: int = field(default=3, metadata={
        "help": "How many times the job requeues itself on --preempt-signal (counted by SLURM_RESTART_COUNT)."})
    sbatch_arg: tuple[str, ...] = field(default=(), metadata={
        "help": "Extra sbatch option written as an #SBATCH line, e.g. --sbatch-arg=--mail-type=END (repeatable)."})
    setup: tuple[str, ...] = field(default=(), metadata={
        "help": "Shell line run in the job before the workers start, e.g. --setup 'module load cuda' (repeatable)."})
    inner: str = field(default="auto", metadata={
        "help": "Process launcher run on each node: local, torchrun, deepspeed, or auto (torchrun for "
                "several nodes or processes per node, else local)."})
    inner_option: tuple[str, ...] = field(default=(), metadata={
        "help": "NAME=VALUE option of the inner launcher, e.g. --inner-option nproc-per-node=4 (repeatable)."})
    wait: bool = field(default=False, metadata={
        "help": "Stay attached: print the job's log as it runs and exit with the job's exit code."})


# -- pure helpers ------------------------------------------------------------------------------
def time_seconds(value: str) -> int | None:
    """Slurm's time formats -> seconds (MINUTES, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS);
    None for unlimited. Raises ConfigError on anything else."""
    if value.strip().lower() in ("infinite", "unlimited"):
        return None
    m = _TIME.match(value.strip())
    if not m:
        raise ConfigError(f"--time {value!r} is not a Slurm time limit",
                          hint="use MINUTES, HH:MM:SS or D-HH:MM:SS, e.g. --time 4:00:00")
    days, a, b, c = m.groups()
    parts = [int(x) for x in (a, b, c) if x is not None]
    if days is not None:  # D-HH[:MM[:SS]]
        hours, minutes, seconds = (parts + [0, 0])[:3]
        return ((int(days) * 24 + hours) * 60 + minutes) * 60 + seconds
    if len(parts) == 1:  # MINUTES
        return parts[0] * 60
    if len(parts) == 2:  # MM:SS
        return parts[0] * 60 + parts[1]
    return (parts[0] * 60 + parts[1]) * 60 + parts[2]  # HH:MM:SS


def gpu_count(gpus: str) -> int:
    """`"4"` or `"a100:4"` -> 4."""
    return int(gpus.rsplit(":", 1)[-1])


def parse_inner_options(specs: tuple[str, ...]) -> dict[str, str]:
    """`("nproc-per-node=2",)` -> `{"nproc_per_node": "2"}`."""
    out: dict[str, str] = {}
    for spec in specs:
        key, eq, value = spec.partition("=")
        key = key.strip().lstrip("-").replace("-", "_")
        if not eq or not key:
            raise ConfigError(f"--inner-option {spec!r} is not NAME=VALUE", hint="e.g. --inner-option nproc-per-node=2")
        out[key] = value
    return out


def processes_per_node(options: SlurmOptions) -> int:
    """Worker processes on each node: --nproc-per-node, else the GPUs per node, else 1."""
    if options.nproc_per_node is not None:
        return options.nproc_per_node
    return gpu_count(options.gpus_per_node) or 1


def default_cpus_per_task(options: SlurmOptions) -> int:
    """``#SBATCH --cpus-per-task`` without --cpus-per-task: the node's task holds every worker
    process, each with :data:`CPUS_PER_GPU_PROCESS` CPUs when the job has GPUs, else
    :data:`CPUS_PER_CPU_PROCESS`. (Without the line the cluster's default applies, often 1 CPU
    for the whole node's workers.)"""
    per = CPUS_PER_GPU_PROCESS if gpu_count(options.gpus_per_node) else CPUS_PER_CPU_PROCESS
    return processes_per_node(options) * per


def cpus_per_task(options: SlurmOptions) -> int:
    return options.cpus_per_task if options.cpus_per_task is not None else default_cpus_per_task(options)


def inner_name(options: SlurmOptions) -> str:
    """The inner launcher `--inner auto` stands for."""
    if options.inner != "auto":
        return options.inner
    return "torchrun" if options.nnodes > 1 or processes_per_node(options) > 1 else "local"


def node_local_paths(job: JobSpec, python: str) -> list[tuple[str, str, str]]:
    """Pure: (what, path, node-local root) for the job's paths under /tmp, /var/tmp or /dev/shm: each node has
    its own, so another node (or a requeued job on another node) does not see what is there."""
    candidates = [("the Python interpreter", python), ("output_dir", str(job.output_dir))]
    for key in ("train_file", "validation_file", "test_file", "model_name_or_path", "config_name",
                "tokenizer_name", "cache_dir", "deepspeed", "resume_from_checkpoint"):
        value = job.args.get(key)
        if isinstance(value, str) and value.startswith("/"):
            candidates.append((f"--{key}", value))
    out = []
    for what, path in candidates:
        norm = os.path.normpath(path)
        for root in NODE_LOCAL:
            if norm == root or norm.startswith(root + "/"):
                out.append((what, path, root))
                break
    return out


def validate_options(o: SlurmOptions) -> None:
    """Checks of the flags alone; pure, so a typo fails before anything is written or queued."""
    if o.nnodes < 1:
        raise ConfigError(f"--nnodes must be 1 or more, not {o.nnodes}")
    if o.nproc_per_node is not None and o.nproc_per_node < 1:
        raise ConfigError(f"--nproc-per-node must be 1 or more, not {o.nproc_per_node}")
    if not _GPUS.match(o.gpus_per_node):
        raise ConfigError(f"--gpus-per-node must be N or TYPE:N, not {o.gpus_per_node!r}", hint="e.g. 8 or a100:8")
    if o.cpus_per_task is not None and o.cpus_per_task < 1:
        raise ConfigError(f"--cpus-per-task must be 1 or more, not {o.cpus_per_task}")
    if o.mem is not None and not _MEM.match(o.mem):
        raise ConfigError(f"--mem {o.mem!r} is not a size", hint="use a number with K, M, G or T, e.g. --mem 64G")
    limit = time_seconds(o.time) if o.time is not None else None
    if o.signal_grace < 0 or o.signal_grace > 65535:
        raise ConfigError(f"--signal-grace must be between 0 and 65535 seconds, not {o.signal_grace}")
    if o.requeue and limit is not None and o.signal_grace >= limit:
        raise ConfigError(
            f"--signal-grace {o.signal_grace} is not shorter than --time {o.time} ({limit} s)",
            hint="give a longer --time or a shorter --signal-grace",
        )
    if o.preempt_signal not in ("USR2", "USR1"):
        raise ConfigError(f"--preempt-signal must be one of USR2, USR1, not {o.preempt_signal!r}",
                          hint="tx's workers save a checkpoint on these two")
    if o.max_requeues < 0:
        raise ConfigError(f"--max-requeues must be 0 or more, not {o.max_requeues}")
    for flag, value in (("--partition", o.partition), ("--account", o.account), ("--qos", o.qos),
                        ("--constraint", o.constraint), ("--job-name", o.job_name)):
        if value is not None and not _WORD.match(value):
            raise ConfigError(f"{flag} {value!r} has characters an #SBATCH line cannot hold",
                              hint="use letters, digits and . _ - , : (no spaces or quotes)")
    for arg in o.sbatch_arg:
        if not arg.startswith("-") or not _WORD.match(arg):
            raise ConfigError(f"--sbatch-arg {arg!r} is not one sbatch option",
                              hint="give each option as one word, e.g. --sbatch-arg=--mail-type=END")
        name = arg.split("=", 1)[0]
        if name in _MANAGED_SBATCH:
            use = _MANAGED_SBATCH[name]
            hint = f"use tx's {use} flag" if use.startswith("--") else use.strip("()")
            raise ConfigError(f"--sbatch-arg {arg!r} sets an option tx writes itself", hint=hint)
    for line in o.setup:
        if "\0" in line or not line.strip():
            raise ConfigError(f"--setup {line!r} is not a shell line")
    if o.inner != "auto" and not re.match(r"^[A-Za-z0-9_-]+$", o.inner):
        raise ConfigError(f"--inner {o.inner!r} is not a launcher name")
    parse_inner_options(o.inner_option)
    inner = inner_name(o)
    if o.nnodes > 1 and inner not in MULTI_NODE_INNER:
        raise ConfigError(f"--inner {inner} runs on one node, and --nnodes is {o.nnodes}",
                          hint="use --inner torchrun (or deepspeed) for several nodes")
    if inner == "local" and processes_per_node(o) > 1:
        raise ConfigError(f"--inner local runs one process per node, and --nproc-per-node is {processes_per_node(o)}",
                          hint="use --inner torchrun (or deepspeed, or auto)")


def sbatch_directives(job: JobSpec, o: SlurmOptions, log_path: str) -> list[str]:
    """The #SBATCH lines of the script (without the prefix)."""
    lines = [
        f"--job-name={o.job_name or 'tx-' + job.task}",
        f"--nodes={o.nnodes}",
        "--ntasks-per-node=1",
    ]
    if gpu_count(o.gpus_per_node) > 0:
        lines.append(f"--gpus-per-node={o.gpus_per_node}")
    lines.append(f"--cpus-per-task={cpus_per_task(o)}")
    if o.mem is not None:
        lines.append(f"--mem={o.mem}")
    if o.time is not None:
        lines.append(f"--time={o.time}")
    for flag, value in (("partition", o.partition), ("account", o.account), ("qos", o.qos),
                        ("constraint", o.constraint)):
        if value is not None:
            lines.append(f"--{flag}={value}")
    if o.exclusive:
        lines.append("--exclusive")
    lines += [
        f"--output={log_path.replace('%', '%%')}",
        "--open-mode=append",
        f"--chdir={job.output_dir}",
    ]
    if o.requeue:
        lines += ["--requeue", f"--signal=B:{o.preempt_signal}@{o.signal_grace}"]
    else:
        lines.append("--no-requeue")
    lines += list(o.sbatch_arg)
    return lines


def shell_word(arg: str) -> str:
    """Quote one argument for the script. The batch script's own variables (``${TX_HEAD}``,
    ``${TX_PORT}``, ``${SLURM_JOB_ID}``) stay expandable; everything else is literal."""
    if not any(var in arg for var in _SCRIPT_VARS):
        return shlex.quote(arg)
    pieces = re.split("(" + "|".join(re.escape(v) for v in _SCRIPT_VARS) + ")", arg)
    if all(p in _SCRIPT_VARS or _PLAIN.match(p) for p in pieces):
        return f'"{arg}"'
    return "".join(f'"{p}"' if p in _SCRIPT_VARS else shlex.quote(p) for p in pieces if p)


@dataclass(frozen=True)
class SlurmPlan(Plan):
    """The sbatch script and where it goes; ``render()`` is the script itself."""

    job_id: str
    task: str
    output_dir: str
    script_path: str
    log_path: str
    exit_path: str
    script: str
    inner: str
    nodes: int
    gpus_per_node: str
    partition: str | None
    wait: bool
    #: `tx: warning:` lines printed at submit (paths a compute node may not see)
    warnings: tuple[str, ...] = ()

    def render(self) -> str:
        return self.script


def render_script(*, job: JobSpec, options: SlurmOptions, script_path: str, log_path: str, exit_path: str,
                  node_argv: tuple[str, ...], inner: str, notes: tuple[str, ...], version: str,
                  env: tuple[tuple[str, str], ...] = ()) -> str:
    """Pure: the whole sbatch script."""
    o = options
    q = shlex.quote
    out = [
        "#!/bin/bash",
        f"# Slurm batch script written by tx {version} for tx job {job.job_id} (task {job.task}, "
        f"{o.nnodes} node{'s' if o.nnodes > 1 else ''}, inner launcher {inner}).",
        f"# The workers read only the job file {job.job_file}; no training argument is in here.",
        "# Submit it again by hand (it resumes from the last checkpoint in output_dir):",
        f"#   sbatch {q(script_path)}",
        "# Or through tx, with a new job record: tx run --from <job file> --launcher slurm",
    ]
    out += [f"#SBATCH {line}" for line in sbatch_directives(job, o, log_path)]
    out.append("")
    if o.setup:
        out.append("# --setup")
        out += list(o.setup)
        out.append("")
    out += [
        "export PYTHONUNBUFFERED=1",
        "# restarts of a requeued job resume from the newest checkpoint (tx.core.trainer)",
        "export TX_RESTART_COUNT=${SLURM_RESTART_COUNT:-0}",
        "# the rendezvous: the first node of the allocation, a port derived from the job id",
        'TX_HEAD=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
        f"TX_PORT=$(({PORT_BASE} + SLURM_JOB_ID % {PORT_SPAN}))",
        'echo "tx: Slurm job $SLURM_JOB_ID (start $((TX_RESTART_COUNT + 1))) on $SLURM_JOB_NODELIST;'
        ' rendezvous $TX_HEAD:$TX_PORT"',
        "",
        "tx_srun='' tx_preempt=0 tx_term=0",
    ]
    sig = o.preempt_signal
    if o.requeue:
        out += [
            f"# SIG{sig} (the time limit is near, or a preemption notice): the workers save a checkpoint",
            "# at their next step and stop; the job is then requeued and resumes from that checkpoint.",
            "tx_on_preempt() {",
            "    tx_preempt=1",
            f'    echo "tx: SIG{sig}: the workers save a checkpoint at their next step and stop" >&2',
            f'    if [ -n "$tx_srun" ]; then kill -{sig} "$tx_srun"; fi',
            "}",
            f"trap tx_on_preempt {sig}",
        ]
    out += [
        "# SIGTERM (tx cancel / scancel, scontrol requeue): Slurm signals the workers too; wait for them",
        "trap 'tx_term=1; echo \"tx: stopped by Slurm; the workers save a checkpoint if they can\" >&2' TERM",
        "",
    ]
    if env:
        out.append(f"# environment of the {inner} launcher (srun passes it to every node)")
        out += [f"export {key}={q(value)}" for key, value in env]
    out += [f"# {note}" for note in notes]
    srun = ["srun", f"--nodes={o.nnodes}", "--ntasks-per-node=1", f"--cpus-per-task={cpus_per_task(o)}"]
    if gpu_count(o.gpus_per_node) > 0:
        srun.append(f"--gpus-per-node={o.gpus_per_node}")
    srun.append("--kill-on-bad-exit=1")
    out += [
        "# one task per node; launch tools run with SIGUSR1/SIGUSR2 ignored (only the workers act on them)",
        " ".join(srun) + " \\",
        "    bash -c 'trap \"\" USR1 USR2; exec \"$@\"' tx-node \\",
        "    " + " ".join(shell_word(a) for a in node_argv) + " &",
        "tx_srun=$!",
        "# a trap interrupts `wait`: keep waiting until the step has really ended",
        'while kill -0 "$tx_srun" 2>/dev/null; do wait "$tx_srun"; done',
        'wait "$tx_srun"; tx_rc=$?',
        "",
    ]
    if o.requeue:
        n = o.max_requeues
        out += [
            'if [ "$tx_preempt" = 1 ] && [ "$tx_rc" != 0 ] && [ "$tx_term" = 0 ]; then',
            f'    if [ "$TX_RESTART_COUNT" -lt {n} ]; then',
            f'        echo "tx: requeueing job $SLURM_JOB_ID (requeue $((TX_RESTART_COUNT + 1)) of at most {n});'
            ' it resumes from its last checkpoint" >&2',
            '        scontrol requeue "$SLURM_JOB_ID" && exit "$tx_rc"',
            '        echo "tx: scontrol requeue failed; the job ends here" >&2',
            "    else",
            f'        echo "tx: not requeueing: the job has been requeued $TX_RESTART_COUNT times (--max-requeues {n})" >&2',
            "    fi",
            "fi",
        ]
    out += [
        "# the exit code, for `tx status` once Slurm has forgotten the job (not when Slurm stopped it)",
        f'if [ "$tx_term" = 0 ]; then echo "$tx_rc" > {q(exit_path)}; fi',
        'echo "tx: job step exited with code $tx_rc"',
        'exit "$tx_rc"',
        "",
    ]
    return "\n".join(out)


def parse_scontrol(text: str) -> dict[str, str]:
    """`scontrol show job -o` output (one line of Key=Value) -> dict. Values may hold '='
    (``TRES=cpu=1,mem=1G``) and, rarely, spaces (paths): a new key starts only at a space
    followed by ``Name=``."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    out: dict[str, str] = {}
    for m in re.finditer(r"(?:^|\s)([A-Za-z][A-Za-z0-9_:/.]*)=(.*?)(?=\s[A-Za-z][A-Za-z0-9_:/.]*=|$)", line):
        out[m.group(1)] = m.group(2)
    return out


def exit_code_of(value: str) -> int | None:
    """Slurm's ExitCode ``CODE:SIGNAL`` -> a shell exit code (128 + signal when killed)."""
    code, _, sig = (value or "").partition(":")
    try:
        c, s = int(code), int(sig or 0)
    except ValueError:
        return None
    return 128 + s if s else c


def job_status(record: dict[str, Any], fields: dict[str, str]) -> JobStatus:
    """Pure: scontrol's fields for the job -> what `tx status` shows."""
    state = (fields.get("JobState") or "UNKNOWN").split()[0]
    nodes = fields.get("NodeList", "")
    extra: dict[str, str] = {}
    reason = fields.get("Reason", "")
    if reason and reason != "None":
        extra["reason"] = reason
    for key in ("Partition", "TimeLimit"):
        if fields.get(key):
            extra[key.lower()] = fields[key]
    try:
        restarts = int(fields.get("Restarts", "0"))
    except ValueError:
        restarts = 0
    return JobStatus(
        job_id=record["job_id"],
        state=state,
        elapsed=fields.get("RunTime", ""),
        nodes="" if nodes in ("(null)", "None") else nodes,
        restarts=restarts,
        exit_code=exit_code_of(fields.get("ExitCode", "")) if state in TERMINAL else None,
        extra=extra,
    )


def wait_exit_code(status: JobStatus) -> int:
    """The exit code `tx run --wait` returns for a job that ended."""
    if status.state == "COMPLETED":
        return status.exit_code or 0
    if status.exit_code:
        return status.exit_code
    return {"CANCELLED": 130, "TIMEOUT": 124, "OUT_OF_MEMORY": 137}.get(status.state, 1)


# -- the launcher ------------------------------------------------------------------------------
class SlurmLauncher(Launcher):
    name = "slurm"
    description = "Submit to Slurm (sbatch): nodes, GPUs, requeue on preemption; tx status/logs/cancel."
    options = SlurmOptions
    scheduler = True

    def __init__(self, launchers: LauncherRegistry | None = None) -> None:
        #: where the inner launcher comes from (every plugin has registered by plan time)
        self._launchers = launchers

    def unavailable_reason(self) -> str | None:
        import shutil

        if shutil.which("sbatch") is None:
            return "sbatch is not on PATH (run tx on a Slurm login node)"
        return None

    def check_usable(self, timeout: float = 3.0) -> str | None:
        """Usable when the controller answers `scontrol ping` (sbatch alone says nothing about it)."""
        from tx.core.launcher import command_problem

        reason = self.unavailable_reason()
        if reason:
            return reason
        problem = command_problem(["scontrol", "ping"], timeout)
        return f"the Slurm controller does not answer: {problem}" if problem else None

    # -- inner launcher ------------------------------------------------------------------------
    def _inner(self, options: SlurmOptions) -> Launcher:
        name = inner_name(options)
        if self._launchers is None:
            raise ConfigError("the slurm launcher was created without a launcher registry")
        inner = self._launchers.get(name)
        if inner.scheduler or inner.name == self.name:
            raise ConfigError(f"--inner {name} is a placement launcher, not a process launcher",
                              hint="use --inner local, torchrun or deepspeed")
        return inner

    def _runner(self, options: SlurmOptions, validating: bool) -> tuple[Launcher, Launcher, dict[str, Any], tuple[str, ...]]:
        """(the inner launcher asked for, the launcher that runs on each node, its option values,
        notes). The values are the user's --inner-option values plus what the allocation decides
        (processes per node, nodes, rendezvous). ``validating`` puts a concrete address where the
        script's variables go, for the inner launcher's own checks."""
        from tx.core import options as launcher_options

        inner = self._inner(options)
        values: dict[str, Any] = launcher_options.canonical(inner.options, parse_inner_options(options.inner_option))
        for key in _MANAGED_INNER.get(inner.name, ()):
            if key in values:
                raise ConfigError(f"--inner-option {key.replace('_', '-')} is set by the slurm launcher",
                                  hint="--nnodes and the allocation decide it")
        if "nproc_per_node" in values and options.nproc_per_node is not None \
                and str(values["nproc_per_node"]) != str(options.nproc_per_node):
            raise ConfigError(f"--inner-option nproc-per-node={values['nproc_per_node']} contradicts "
                              f"--nproc-per-node {options.nproc_per_node}", hint="give --nproc-per-node only")
        per_node = values.pop("nproc_per_node", None)
        if per_node is None or options.nproc_per_node is not None:
            per_node = processes_per_node(options)
        runner, notes = inner, []
        if inner.name == "deepspeed" and options.nnodes > 1:
            # DeepSpeed's own launcher reaches other nodes over ssh/pdsh; under Slurm srun does
            # that, and torchrun on each node starts the processes. The Trainer still sets up
            # DeepSpeed from the job's --deepspeed config.
            runner = self._launchers.get("torchrun")  # type: ignore[union-attr]
            values = {}
            notes.append("--inner deepspeed on several nodes: srun starts torchrun on each node and the "
                         "Trainer runs DeepSpeed with the job's --deepspeed config")
        if runner.name == "torchrun":
            values["nproc_per_node"] = str(per_node)
            values["nnodes"] = str(options.nnodes)
            values["rdzv_backend"] = "c10d"
            values["rdzv_endpoint"] = "node0:29400" if validating else f"{HEAD}:{PORT}"
            values["rdzv_id"] = "1" if validating else JOB_ID
            notes.append("torchrun's c10d rendezvous on the first node gives every node its rank")
        elif runner.name != "local":
            values["nproc_per_node"] = per_node
        return inner, runner, values, tuple(notes)

    def adjust_args(self, args: dict[str, Any], options: Any, *, known: set[str],
                    given: set[str]) -> tuple[dict[str, Any], list[str]]:
        """The inner launcher's changes (--inner deepspeed without --deepspeed: the zero2 preset)."""
        validate_options(options)
        inner, runner, values, _ = self._runner(options, validating=True)
        return inner.adjust_args(args, self._runner_options(inner, inner, values if runner is inner else {}),
                                 known=known, given=given)

    def _runner_options(self, inner: Launcher, runner: Launcher, values: dict[str, Any]) -> Any:
        from tx.core import options as launcher_options

        try:
            return launcher_options.build_options(runner.options, values)
        except ConfigError as exc:
            raise ConfigError(f"--inner-option for {inner.name!r}: {exc.message}", hint=exc.hint) from None

    # -- checks --------------------------------------------------------------------------------
    def validate(self, job: JobSpec, options: Any) -> None:
        from tx.core import options as launcher_options

        validate_options(options)
        if not _SAFE_PATH.match(str(job.output_dir)):
            raise ConfigError(f"output_dir {str(job.output_dir)!r} has spaces, quotes or $ in it, which #SBATCH "
                              "lines cannot hold", hint="choose an --output_dir path without them")
        inner, runner, values, _ = self._runner(options, validating=True)
        try:
            if runner is not inner:  # deepspeed over several nodes: its checks of the job still apply
                inner.validate(job, launcher_options.build_options(inner.options, {}))
            runner.validate(job, self._runner_options(inner, runner, values))
        except ConfigError as exc:
            raise ConfigError(f"--inner {inner.name}: {exc.message}", hint=exc.hint) from None

    def world_size(self, options: Any) -> int | None:
        try:
            inner, runner, values, _ = self._runner(options, validating=True)
            per = runner.world_size(self._runner_options(inner, runner, values))
        except ConfigError:
            return None
        if per is None:
            return None
        return per if runner.name == "torchrun" else per * options.nnodes

    # -- plan ----------------------------------------------------------------------------------
    def plan(self, job: JobSpec, options: Any, job_file: Path) -> Plan:
        """Pure: the sbatch script for ``job``."""
        from tx.core import __version__

        folder = Path(job.output_dir) / SLURM_DIR
        script_path = str(folder / f"{job.job_id}.sbatch")
        log_path = str(folder / f"{job.job_id}.log")
        exit_path = str(folder / f"{job.job_id}.exit")
        inner, runner, values, notes = self._runner(options, validating=False)
        inner_plan = runner.plan(job, self._runner_options(inner, runner, values), job_file)
        if not isinstance(inner_plan, ProcessPlan):
            raise ConfigError(f"--inner {inner.name} does not run a process, so srun cannot start it")
        if inner_plan.cwd:
            raise ConfigError(f"--inner {inner.name} needs its own working directory, which the slurm launcher "
                              "does not set", hint="use --inner local, torchrun or deepspeed")
        script = render_script(
            job=job, options=options, script_path=script_path, log_path=log_path, exit_path=exit_path,
            node_argv=inner_plan.argv, inner=runner.name, notes=notes + inner_plan.notes, version=__version__,
            env=inner_plan.env,
        )
        return SlurmPlan(
            job_id=job.job_id, task=job.task, output_dir=str(job.output_dir), script_path=script_path,
            log_path=log_path, exit_path=exit_path, script=script, inner=inner_name(options), nodes=options.nnodes,
            gpus_per_node=options.gpus_per_node, partition=options.partition, wait=options.wait,
            warnings=tuple(
                f"{what} {path} is under {root}, which each node has for itself: the compute nodes "
                "(and a requeued job on another node) may not see it; use a shared file system (docs/slurm.md)"
                for what, path, root in node_local_paths(job, inner_plan.argv[0])),
        )

    # -- launch --------------------------------------------------------------------------------
    def launch(self, plan: Plan) -> int:
        assert isinstance(plan, SlurmPlan)
        from tx.core.jobs import save_record
        from tx.core.submit_summary import submit_summary

        for warning in plan.warnings:
            print(f"tx: warning: {warning}", file=sys.stderr, flush=True)
        script = Path(plan.script_path)
        script.parent.mkdir(parents=True, exist_ok=True)
        tmp = script.with_name(f".{script.name}.{os.getpid()}.tmp")
        tmp.write_text(plan.script, encoding="utf-8")
        os.replace(tmp, script)
        out = _run(["sbatch", "--parsable", str(script)], what="submit the job")
        slurm_id = out.strip().splitlines()[-1].split(";")[0].strip() if out.strip() else ""
        if not slurm_id.isdigit():
            raise LaunchError(f"sbatch did not print a job id (it printed {out.strip()[:200]!r})")
        record = {
            "job_id": plan.job_id,
            "launcher": self.name,
            "task": plan.task,
            "output_dir": plan.output_dir,
            "submitted": _now(),
            "scheduler_id": slurm_id,
            "log_path": plan.log_path,
            "script_path": plan.script_path,
            "exit_path": plan.exit_path,
            "inner": plan.inner,
            "nodes": plan.nodes,
        }
        if os.environ.get("SLURM_CONF"):
            record["slurm_conf"] = os.environ["SLURM_CONF"]  # `tx status` asks this cluster, from any shell
        save_record(record)
        gpus = gpu_count(plan.gpus_per_node)
        details = [("nodes", f"{plan.nodes}" + (f" x {plan.gpus_per_node} GPUs" if gpus else "")),
                   ("inner", plan.inner)]
        if plan.partition:
            details.append(("partition", plan.partition))
        details += [("script", plan.script_path), ("resubmit", f"sbatch {shlex.quote(plan.script_path)}")]
        print(submit_summary(record, details), flush=True)
        if not plan.wait:
            return 0
        return self._wait(record)

    def _wait(self, record: dict[str, Any]) -> int:
        """Print the log as the job runs; return its exit code once it has ended."""
        slurm_id = record["scheduler_id"]
        try:
            for chunk in self.logs(record, follow=True):
                sys.stdout.write(chunk)
                sys.stdout.flush()
        except KeyboardInterrupt:
            print(f"\ntx: stopped following; Slurm job {slurm_id} keeps running "
                  f"(stop it with `tx cancel {record['job_id']}`)", file=sys.stderr, flush=True)
            return 130
        status = self.status(record)
        code = wait_exit_code(status)
        print(f"tx: Slurm job {slurm_id} ended: {status.state} (exit code {code})", file=sys.stderr, flush=True)
        return code

    # -- scheduler methods ---------------------------------------------------------------------
    def status(self, record: dict[str, Any]) -> JobStatus:
        fields = _show_job(record)
        if fields is not None:
            status = job_status(record, fields)
            if status.state in TERMINAL and record.get("last_state") != status.state:
                from tx.core.jobs import save_record

                save_record({**record, "last_state": status.state, "last_exit_code": status.exit_code,
                             "last_elapsed": status.elapsed, "last_nodes": status.nodes,
                             "last_restarts": status.restarts})
            return status
        return _forgotten_status(record)

    def logs(self, record: dict[str, Any], follow: bool = False) -> Iterator[str]:
        path = Path(record["log_path"])
        if not follow:
            if not path.exists():
                state = self.status(record).state
                yield f"(no output yet: job {record['job_id']} is {state}; its log will be {path})\n"
                return
            yield path.read_text(encoding="utf-8", errors="replace")
            return
        pos = 0
        next_check = 0.0
        while True:
            chunk = _read_from(path, pos)
            pos += len(chunk)
            if chunk:
                yield chunk.decode("utf-8", errors="replace")
            now = time.monotonic()
            if now >= next_check:
                next_check = now + 2.0
                if self.status(record).state in TERMINAL | {"UNKNOWN", "ENDED"}:
                    rest = _read_from(path, pos)
                    if rest:
                        yield rest.decode("utf-8", errors="replace")
                    return
            if not chunk:
                time.sleep(0.5)

    def cancel(self, record: dict[str, Any]) -> str:
        """scancel the job; a job that already ended (or is ending) is left alone: idempotent."""
        from tx.core.jobs import save_record

        status = self.status(record)
        slurm_id = record["scheduler_id"]
        who = f"job {record['job_id']} (Slurm job {slurm_id})"
        if status.state in TERMINAL or status.state in ("UNKNOWN", "ENDED"):
            return f"{who} already ended ({status.state}); nothing to cancel"
        if status.state == "COMPLETING":
            return f"{who} is already ending (COMPLETING); nothing to cancel"
        _run(["scancel", str(slurm_id)], what="cancel the job", env=_env(record))
        save_record({**record, "cancelled": True})
        return f"cancelled {who}, which was {status.state}; running workers save a checkpoint at their next step"


# -- Slurm commands ---------------------------------------------------------------------------
def _env(record: dict[str, Any] | None = None) -> dict[str, str]:
    """The environment for Slurm commands about ``record``'s job: the cluster it was submitted to
    (its SLURM_CONF, when one was set and still exists) whatever this shell's SLURM_CONF says."""
    env = dict(os.environ)
    conf = (record or {}).get("slurm_conf")
    if conf and os.path.isfile(conf):
        env["SLURM_CONF"] = conf
    return env


def _run(argv: list[str], *, what: str, env: dict[str, str] | None = None) -> str:
    import subprocess

    try:
        done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    except FileNotFoundError:
        raise LaunchError(f"{argv[0]} is not on PATH, so tx cannot {what}",
                          hint="run tx on a Slurm login node (or load Slurm's module)") from None
    except subprocess.TimeoutExpired:
        raise LaunchError(f"{argv[0]} did not answer within 120 s", hint="is slurmctld up? try `scontrol ping`") from None
    if done.returncode != 0:
        message = " ".join((done.stderr or done.stdout).split()) or f"exit code {done.returncode}"
        message = re.sub(rf"^{re.escape(argv[0])}: (error: )?", "", message)
        raise LaunchError(f"{argv[0]} could not {what}: {message}",
                          hint="check the #SBATCH options (`tx run ... --dry-run` prints the script)"
                          if argv[0] == "sbatch" else None)
    return done.stdout


def _show_job(record: dict[str, Any]) -> dict[str, str] | None:
    """scontrol's fields for the job, or None when Slurm no longer knows it."""
    try:
        out = _run(["scontrol", "show", "job", "-o", str(record["scheduler_id"])], what="look up the job",
                   env=_env(record))
    except LaunchError as exc:
        if "Invalid job id" in exc.message:
            return None
        raise
    return parse_scontrol(out) or None


def _forgotten_status(record: dict[str, Any]) -> JobStatus:
    """A job Slurm has purged (MinJobAge): the exit code the script left, or the last state seen."""
    code: int | None = None
    try:
        code = int(Path(record.get("exit_path", "")).read_text().strip())
    except (OSError, ValueError):
        pass
    if record.get("last_state"):
        return JobStatus(job_id=record["job_id"], state=record["last_state"], elapsed=record.get("last_elapsed", ""),
                         nodes=record.get("last_nodes", ""), restarts=int(record.get("last_restarts") or 0),
                         exit_code=record.get("last_exit_code"), extra={"note": "no longer listed by Slurm"})
    if code is not None:
        return JobStatus(job_id=record["job_id"], state="COMPLETED" if code == 0 else "FAILED", exit_code=code,
                         extra={"note": "no longer listed by Slurm; state from the script's exit code"})
    return JobStatus(job_id=record["job_id"], state="ENDED",
                     extra={"note": "no longer listed by Slurm and no exit code recorded (killed or cancelled)"})


def _read_from(path: Path, pos: int) -> bytes:
    try:
        with open(path, "rb") as fh:
            fh.seek(pos)
            return fh.read()
    except FileNotFoundError:
        return b""


def _now() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


@hookimpl
def tx_register_launchers(registry: Any) -> None:
    registry.add(SlurmLauncher(registry))
