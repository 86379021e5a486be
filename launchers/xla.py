"""`--launcher xla`: the worker on XLA devices (TPU; CPU for testing) through ``torch_xla.launch``.

The command is ``python -m tx.launchers.xla_worker JOB_FILE`` with ``PJRT_DEVICE`` set. That
module imports transformers and the task plugins before ``torch_xla.launch`` starts, then runs the
normal worker path (tx.core.worker) once per device. ``torch_xla.launch`` replaces the deprecated
``xla_spawn.py``/``xmp.spawn`` pattern of the Hugging Face examples.

- ``--num-cores 1`` (and CPU, which has one device unless told otherwise): one process, the
  worker in its main thread (``debug_single_process``), so Ctrl-C/SIGTERM save a checkpoint as
  with the local launcher.
- Several devices (TPU): torch_xla starts one process per chip and runs the worker in one thread
  per device. A stop signal then ends the run without saving a checkpoint (Python only lets the
  main thread handle signals).
- Several CPU devices are refused: XLA:CPU's in-process collectives do not work with the Trainer
  (docs/xla-notes.md says why).

XLA-incompatible defaults are changed before the job is written, each with a printed note
(:func:`xla_adjustments`): the fused AdamW default, pinned memory, dynamic padding.

torch_xla must match torch (torch_xla 2.9 needs torch 2.9), so it often lives in its own
environment: ``--python`` names that interpreter (it needs tx installed too).
"""

from __future__ import annotations

import ast
import functools
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tx.core.errors import ConfigError, LaunchError
from tx.core.hookspecs import hookimpl
from tx.core.launcher import Plan, ProcessLauncher, ProcessPlan

WORKER_MODULE = "tx.launchers.xla_worker"
#: the optimizer transformers picks by default (torch >= 2.8): its fused kernel rejects XLA tensors
FUSED_ADAMW = "adamw_torch_fused"
XLA_ADAMW = "adamw_torch"
CPU_ENV_HINT = "to test on CPU, make the environment with `bash scripts/xla-env.sh .` in a tx checkout and " \
               "pass --python ~/.cache/tx/xla-venv/bin/python"
DOCS = "docs/xla-notes.md"
#: the newest torch_xla release; it needs the torch of the same version
XLA_NEWEST = "2.9.0"


def install_line(torch_version: str) -> str:
    """Pure: the exact command that gives an interpreter with ``torch_version`` a torch_xla:
    the matching release when there is one, else an environment of its own with the newest pair."""
    base = torch_version.split("+")[0]
    parts = [int(x) for x in base.split(".")[:2] if x.isdigit()]
    newest = [int(x) for x in XLA_NEWEST.split(".")[:2]]
    if len(parts) == 2 and [2, 1] <= parts <= newest:
        return f"pip install 'torch_xla[tpu]=={base}'"
    return (f"python -m venv ~/xla && ~/xla/bin/pip install torch=={XLA_NEWEST} 'torch_xla[tpu]=={XLA_NEWEST}' "
            f"tx-train, then pass --python ~/xla/bin/python")


@dataclass(frozen=True)
class XlaOptions:
    nproc_per_node: int | None = field(default=None, metadata={
        "aliases": ("num_cores",),
        "help": "XLA devices to train on (xla_spawn's --num_cores): 1, or all of them (default; on CPU: 1). "
                "torch_xla.launch runs on one device or on every device the PJRT runtime sees."})
    nnodes: int = field(default=1, metadata={
        "help": "Hosts: 1. On a multi-host TPU slice, run the same command on every host (the PJRT "
                "runtime finds the others)."})
    pjrt_device: Literal["TPU", "CPU"] = field(default="TPU", metadata={
        "help": "PJRT device type (PJRT_DEVICE): TPU, or CPU to test without a TPU."})
    python: str | None = field(default=None, metadata={
        "help": "Python interpreter with torch_xla and tx installed (default: the one running tx)."})


def single_process(o: XlaOptions) -> bool:
    """Pure: run the worker in the launching process's main thread (one device)."""
    return o.nproc_per_node == 1 or (o.pjrt_device == "CPU" and o.nproc_per_node is None)


def validate_options(o: XlaOptions) -> None:
    """Checks of the flags alone; pure."""
    if o.nproc_per_node is not None and o.nproc_per_node < 1:
        raise ConfigError(f"--nproc-per-node (--num-cores) must be 1 or more, not {o.nproc_per_node}")
    if o.nnodes != 1:
        raise ConfigError(f"--nnodes {o.nnodes}: --launcher xla starts the workers of one host",
                          hint="on a multi-host TPU slice run the same command on every host, with --nnodes 1")
    if o.pjrt_device == "CPU" and (o.nproc_per_node or 1) > 1:
        raise ConfigError(
            f"--nproc-per-node {o.nproc_per_node} with --pjrt-device CPU does not work: XLA:CPU's in-process "
            "collectives deadlock or abort in the Trainer's first all-reduce",
            hint=f"use --nproc-per-node 1 on CPU (several devices need TPUs); {DOCS} explains why")


def xla_adjustments(args: dict[str, Any], known: set[str], given: set[str]) -> tuple[dict[str, Any], list[str]]:
    """Pure: the job's HF arguments changed where their defaults do not suit XLA, and a note per
    change. Values the user gave are kept, except a fused AdamW, which cannot run."""
    out = dict(args)
    notes: list[str] = []
    optim = args.get("optim")  # absent: transformers' default, the fused AdamW
    if optim in (None, FUSED_ADAMW):
        if "optim" in given:
            raise ConfigError(f"--optim {FUSED_ADAMW} does not work on XLA devices (the fused kernel rejects "
                              "XLA tensors)", hint=f"use --optim {XLA_ADAMW} or adamw_torch_xla")
        out["optim"] = XLA_ADAMW
        notes.append(f"--optim {XLA_ADAMW}: the default fused AdamW does not take XLA tensors")
    if "dataloader_pin_memory" not in given and args.get("dataloader_pin_memory", True):
        out["dataloader_pin_memory"] = False
        notes.append("--dataloader_pin_memory false: pinned memory only speeds up copies to a GPU")
    if "pad_to_max_length" in known and "pad_to_max_length" not in given and not args.get("pad_to_max_length"):
        out["pad_to_max_length"] = True
        notes.append("--pad_to_max_length: every new input shape compiles a new XLA graph")
    return out, notes


def check_devices(expected: int | None, seen: int) -> None:
    """Pure: fail when the PJRT runtime's devices are not the --num-cores the user asked for
    (called by the worker, where the runtime tells how many devices it has)."""
    if expected is not None and expected != seen:
        raise LaunchError(
            f"--num-cores {expected} but torch_xla runs on {seen} devices",
            hint="torch_xla.launch uses 1 device or all of them: pass --num-cores 1, or leave it out and limit "
                 "the devices with the PJRT runtime's own settings",
        )


# -- is torch_xla there? ------------------------------------------------------------------------
#: Run by --python: which of torch_xla, torch and tx that interpreter has (versions, "" = missing).
_PROBE = """
import importlib.metadata as m, importlib.util as u
def v(dist, mod):
    if u.find_spec(mod) is None:
        return ""
    try:
        return m.version(dist)
    except Exception:
        return "?"
print(repr({"torch_xla": v("torch_xla", "torch_xla"), "torch": v("torch", "torch"), "tx": v("tx-train", "tx.core"),
            "tensorboard": v("tensorboard", "tensorboard") or v("tensorboardX", "tensorboardX")}))
"""


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


def local_versions() -> dict[str, str]:
    """What _PROBE reports, for the interpreter running tx (no subprocess, no heavy import)."""
    import importlib.util

    return {
        "torch_xla": _version("torch_xla") if importlib.util.find_spec("torch_xla") else "",
        "torch": _version("torch") if importlib.util.find_spec("torch") else "",
        "tx": "here",
        "tensorboard": "yes" if importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX") else "",
    }


def probe_interpreter(python: str, timeout: float = 60) -> dict[str, str]:
    """Ask ``python`` what it has installed (a subprocess; called at validation, never in plan())."""
    path = Path(python).expanduser()
    if not path.is_file() or not os.access(path, os.X_OK):
        raise ConfigError(f"--python {python!r} is not an executable file", hint="pass the path of a Python interpreter")
    try:
        done = subprocess.run([str(path), "-c", _PROBE], capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LaunchError(f"cannot run --python {python!r}: {exc}") from None
    try:
        info = ast.literal_eval(done.stdout.strip().splitlines()[-1])
    except (ValueError, SyntaxError, IndexError):
        raise LaunchError(f"--python {python!r} did not answer like a Python 3 interpreter",
                          hint="pass the path of a Python interpreter with torch_xla installed") from None
    return {k: str(v) for k, v in info.items()}


@functools.lru_cache(maxsize=8)
def interpreter_info(python: str | None) -> dict[str, str]:
    """What the interpreter that will run the worker has (``None``: the one running tx); asked once."""
    return probe_interpreter(python) if python else local_versions()


def _report_to(args: dict[str, Any]) -> list[str]:
    value = args.get("report_to")
    return [value] if isinstance(value, str) else list(value or [])


def _minor(version: str) -> str:
    return ".".join(version.split("+")[0].split(".")[:2])


def interpreter_problem(python: str, info: dict[str, str]) -> tuple[str, str] | None:
    """Pure: (what is wrong, what to do) with the interpreter that will run the worker, or None."""
    torch = info.get("torch", "")
    if not info.get("torch_xla"):
        line = install_line(torch if torch and torch != "?" else "")
        return (f"torch_xla is not installed for {python}",
                f"torch_xla must match torch's version; install it with: {line} ({CPU_ENV_HINT})")
    if not torch:
        return f"torch is not installed for {python}", "Install the torch version that matches torch_xla there"
    xla, torch_v = info["torch_xla"], torch
    if "?" not in (xla, torch_v) and _minor(xla) != _minor(torch_v):
        return (f"torch_xla {xla} needs torch {_minor(xla)}, but {python} has torch {torch_v}",
                f"Install matching versions (pip install torch=={xla.split('+')[0]} torch_xla=={xla.split('+')[0]})")
    if not info.get("tx"):
        return (f"tx is not installed for {python}",
                "Install it there too (`pip install tx-train`, or `pip install --no-deps -e .` in a checkout; "
                "scripts/xla-env.sh does it)")
    return None


class XlaLauncher(ProcessLauncher):
    name = "xla"
    description = "Run the worker on XLA devices (TPU; CPU for testing) with torch_xla.launch."
    options = XlaOptions

    def unavailable_reason(self) -> str | None:
        info = local_versions()
        if not info["torch_xla"]:  # short, for `tx env`; validate() gives the whole hint
            return f"torch_xla is not installed; install it with: {install_line(info['torch'])}"
        problem = interpreter_problem(sys.executable, info)
        return problem[0] if problem else None

    def adjust_args(self, args: dict[str, Any], options: XlaOptions, *, known: set[str],
                    given: set[str]) -> tuple[dict[str, Any], list[str]]:
        out, notes = xla_adjustments(args, known, given)
        # tx's default --report_to follows the interpreter running tx; --python may lack tensorboard
        if options.python and "report_to" not in given and "tensorboard" in _report_to(out) \
                and not interpreter_info(options.python).get("tensorboard"):
            out["report_to"] = "none"
            notes.append(f"--report_to none: tensorboard is not installed for {options.python}")
        return out, notes

    def validate(self, job: Any, options: XlaOptions) -> None:
        if job.args.get("deepspeed"):
            raise ConfigError("--deepspeed cannot be used with --launcher xla: it runs torch_xla, not DeepSpeed",
                              hint="drop --deepspeed, or use --launcher deepspeed")
        validate_options(options)
        python = options.python or sys.executable
        info = interpreter_info(options.python)
        problem = interpreter_problem(python, info)
        if problem:
            raise LaunchError(problem[0], hint=problem[1])
        if "tensorboard" in _report_to(job.args) and not info.get("tensorboard"):
            raise ConfigError(f"--report_to tensorboard needs tensorboard, which is not installed for {python}",
                              hint="install it there, or pass --report_to none")

    def world_size(self, options: XlaOptions) -> int | None:
        return 1 if single_process(options) else options.nproc_per_node

    def plan(self, job: Any, options: XlaOptions, job_file: Path) -> Plan:
        python = options.python or sys.executable
        env = [("PJRT_DEVICE", options.pjrt_device)]
        if options.pjrt_device == "CPU":
            env.append(("CPU_NUM_DEVICES", str(options.nproc_per_node or 1)))
        if single_process(options):
            how = "torch_xla.launch(debug_single_process=True): one device, the worker in this process's main thread"
        elif options.nproc_per_node:
            how = f"torch_xla.launch: one thread per device on {options.nproc_per_node} devices (checked at start)"
        else:
            how = "torch_xla.launch: one thread per device on every device the PJRT runtime sees"
        return ProcessPlan(argv=(python, "-m", WORKER_MODULE, str(job_file)), env=tuple(env), notes=(how,))


@hookimpl
def tx_register_launchers(registry: Any) -> None:
    registry.add(XlaLauncher())
