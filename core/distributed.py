"""Multi-process runs inside the worker: pick a backend that works here, and refuse to run when
the processes a launcher started do not form one training job.

Why in the worker and not in the launcher: only the process that trains knows whether it has a
CUDA device. A job planned on a CPU-only login node may run on GPU nodes (slurm, docker), and
the job file must stay valid for both, so the job file keeps the user's values and the worker
adjusts them, saying so on rank 0.

What goes wrong without this, with transformers 5.23 / accelerate 1.15 on a machine without
CUDA: accelerate only treats a multi-process run as distributed (``MULTI_CPU``) when it is told
to use the CPU. Otherwise ``torchrun --nproc-per-node 2`` gives two processes that each see
world size 1 (two independent copies of the model), and ``--ddp_backend gloo`` alone gives world
size 2 but ``ParallelMode.NOT_PARALLEL`` (accelerate's ``DistributedType.NO``): the model is
not wrapped in DistributedDataParallel, so the processes never average their gradients.
DeepSpeed asserts ``train_batch_size != micro * accum * world``. With ``use_cpu`` (and
``ddp_backend gloo``, which keeps accelerate from picking MPI when it is installed) the
processes form one data-parallel job; check_world_size() refuses anything else.
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping

from tx.core.errors import ConfigError, LaunchError


def launched_world_size(env: Mapping[str, str] | None = None) -> int:
    """How many processes the launcher started (WORLD_SIZE, set by torchrun, deepspeed and
    accelerate); 1 when the worker was started alone."""
    env = os.environ if env is None else env
    try:
        return max(1, int(env.get("WORLD_SIZE", "1") or 1))
    except ValueError:
        return 1


def cpu_adjustments(args: Mapping[str, Any], world_size: int, has_cuda: bool) -> tuple[dict[str, Any], list[str]]:
    """Pure: the job's HF arguments as this worker must use them, and notes saying what changed.

    Only a multi-process run without CUDA is changed: ``use_cpu`` is switched on and
    ``ddp_backend`` becomes gloo unless the user chose a backend that works on CPUs.
    """
    out = dict(args)
    notes: list[str] = []
    if world_size <= 1 or has_cuda:
        return out, notes
    backend = out.get("ddp_backend")
    if backend in (None, ""):
        out["ddp_backend"] = "gloo"
    elif backend not in ("gloo", "mpi", "ccl"):
        raise ConfigError(
            f"--ddp_backend {backend} needs accelerators and this machine has no CUDA device",
            hint="use --ddp_backend gloo (or leave it unset) to train on CPUs",
        )
    if not out.get("use_cpu"):
        out["use_cpu"] = True
    changed = [f"--{k} {out[k]}" for k in ("use_cpu", "ddp_backend") if out.get(k) != args.get(k)]
    if changed:
        notes.append(f"no CUDA device: the {world_size} processes train on CPUs with " + " ".join(changed))
    return out, notes


def zero_stage(config: Any) -> int | None:
    """The ZeRO stage of a DeepSpeed config (a JSON file path or a dict); None when unknown."""
    if isinstance(config, (str, os.PathLike)):
        try:
            with open(config, encoding="utf-8") as fh:
                config = json.load(fh)
        except (OSError, ValueError):
            return None
    stage = config.get("zero_optimization", {}).get("stage", 0) if isinstance(config, dict) else None
    return stage if isinstance(stage, int) else None


def evaluation_without_zero(args: Mapping[str, Any], stage: int | None) -> tuple[dict[str, Any], list[str]]:
    """Pure: a job that does not train evaluates without DeepSpeed when its ZeRO stage is below 3.

    Stages 0-2 only partition the optimizer state and gradients: for evaluation and prediction
    every process holds the whole model anyway, and transformers refuses to start them
    ("ZeRO inference only makes sense with ZeRO Stage 3"). So the same job runs data-parallel
    without the DeepSpeed engine, with the same results. Stage 3 (sharded weights) is kept."""
    out = dict(args)
    if not out.get("deepspeed") or out.get("do_train") or stage is None or stage >= 3:
        return out, []
    del out["deepspeed"]
    return out, [f"no training: evaluation and prediction run without DeepSpeed (ZeRO stage {stage} "
                 "partitions only training state; transformers runs inference under ZeRO-3 only)"]


def worker_args(args: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """:func:`cpu_adjustments` and :func:`evaluation_without_zero` for this process (reads
    WORLD_SIZE, the DeepSpeed config, and asks torch about CUDA)."""
    out, notes = evaluation_without_zero(args, zero_stage(args.get("deepspeed")) if args.get("deepspeed") else None)
    world = launched_world_size()
    if world <= 1:
        return out, notes
    import torch

    out, more = cpu_adjustments(out, world, torch.cuda.is_available())
    return out, notes + more


def check_world_size(training: Any, env: Mapping[str, str] | None = None) -> None:
    """Fail when the launcher started N processes but transformers does not see one N-process
    data-parallel job: the processes would train N models that never exchange gradients."""
    expected = launched_world_size(env)
    if expected <= 1:
        return
    seen = int(getattr(training, "world_size", 1))
    mode = getattr(getattr(training, "parallel_mode", None), "value", "")
    if seen != expected or mode not in ("distributed", "tpu"):
        raise LaunchError(
            f"the launcher started {expected} processes but transformers sees world size {seen} in "
            f"parallel mode {mode or 'unknown'!r} (use_cpu={getattr(training, 'use_cpu', None)}, "
            f"ddp_backend={getattr(training, 'ddp_backend', None)!r}): they would not train one model",
            hint="on CPUs pass --use_cpu --ddp_backend gloo; on GPUs leave --ddp_backend unset or use nccl",
        )


def is_main_rank(env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    return env.get("RANK", "0") in ("0", "")
