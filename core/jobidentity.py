"""What makes two runs "the same job", and the records tx keeps of it.

Two notions, both computed from the parsed HF arguments (never from the job id, which is new
for every `tx run`, so "the same command again" is recognised by its arguments):

- the **training identity**: the arguments that change the training trajectory (model, data,
  optimiser, schedule, seed, batch size, steps ...). It is written into every checkpoint
  (``checkpoint-N/tx-job-identity.json``, inside the atomic save) and a checkpoint is resumed
  automatically only by a run with the same training identity.
- the **job fingerprint**: the training identity plus what the run does and reports (do_train /
  do_eval / do_predict, evaluation and generation arguments, max_eval_samples ...). A finished
  job adds its record to ``<output_dir>/tx-finished.json``; a rerun with the same fingerprint is
  "already finished".

Every argument counts unless listed below, so a new argument (a plugin's, a newer transformers')
counts by default. Not counted anywhere (:data:`BOOKKEEPING`): where outputs go, logging and
reporting, how often checkpoints are saved, the Hub, and the process/device set-up that the
launcher and the machine decide (tx changes ``use_cpu``/``ddp_backend`` per worker). Counted in
the fingerprint only (:data:`EVALUATION_ONLY`): arguments that change evaluation and prediction
but never the weights training produces.

Comparison is per argument, over the names both records have: an argument that one tx or
transformers version does not know is not a difference, so an upgrade does not orphan
checkpoints. The hashes are short ids to show, not what is compared.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: File in each checkpoint-N written by tx (core/atomic_checkpoint.py).
CHECKPOINT_RECORD = "tx-job-identity.json"
#: File in output_dir written by rank 0 once every output of the job is written.
FINISHED_RECORD = "tx-finished.json"

BOOKKEEPING = frozenset({
    # where things go, and permission to reuse the folder
    "output_dir", "overwrite_output_dir", "resume_from_checkpoint", "logging_dir", "cache_dir",
    "overwrite_cache", "preprocessing_num_workers", "data_dir", "metric_dir",
    # logging and reporting
    "logging_strategy", "logging_steps", "logging_first_step", "log_on_each_node", "logging_nan_inf_filter",
    "include_num_input_tokens_seen", "include_tokens_per_second", "log_level", "log_level_replica",
    "disable_tqdm", "report_to", "run_name", "project", "trackio_space_id", "trackio_bucket_id",
    "trackio_static_space_id", "skip_memory_metrics",
    # checkpoint saving (how often / what), not what is trained
    "save_strategy", "save_steps", "save_total_limit", "save_on_each_node", "save_only_model",
    "save_safetensors", "save_on_interrupt", "enable_jit_checkpoint", "restore_callback_states_from_checkpoint",
    # the Hub and secrets
    "push_to_hub", "hub_token", "hub_private_repo", "hub_model_id", "hub_strategy", "hub_always_push",
    "hub_revision", "push_to_hub_model_id", "token", "use_auth_token",
    # process, device and loader set-up (decided by the launcher and the machine)
    "use_cpu", "no_cuda", "local_rank", "ddp_backend", "ddp_timeout", "ddp_find_unused_parameters",
    "ddp_bucket_cap_mb", "ddp_broadcast_buffers", "ddp_static_graph", "dataloader_num_workers",
    "dataloader_pin_memory", "dataloader_persistent_workers", "dataloader_prefetch_factor",
    "dataloader_multiprocessing_context", "debug", "torch_empty_cache_steps", "trust_remote_code",
    # aliases tx converts into their new names before anything is built
    "evaluation_strategy", "group_by_length",
})

EVALUATION_ONLY = frozenset({
    "do_train", "do_eval", "do_predict",
    "eval_strategy", "eval_steps", "eval_delay", "per_device_eval_batch_size", "prediction_loss_only",
    "eval_on_start", "eval_do_concat_batches", "eval_use_gather_object", "eval_accumulation_steps",
    "include_for_metrics", "include_inputs_for_metrics", "batch_eval_metrics", "bf16_full_eval", "fp16_full_eval",
    "load_best_model_at_end", "metric_for_best_model", "greater_is_better",
    "predict_with_generate", "generation_max_length", "generation_num_beams", "generation_config",
    "sortish_sampler", "validation_file", "test_file", "max_eval_samples", "max_predict_samples",
    "val_max_target_length", "num_beams", "validation_split_name", "test_split_name", "metric_name",
})


def _plain(value: Any) -> Any:
    """A JSON value that compares equal after a round trip through a file."""
    return json.loads(json.dumps(value, default=lambda v: getattr(v, "value", None) or repr(v), sort_keys=True))


def argument_values(run_args: Any) -> dict[str, Any]:
    """Every init argument of the run's model/data/training dataclasses, as plain JSON values
    (tx's own options hold nothing that changes a job)."""
    out: dict[str, Any] = {}
    for part in (run_args.model, run_args.data, run_args.training):
        for f in dataclasses.fields(part):
            if f.init and f.name not in BOOKKEEPING:
                out[f.name] = _plain(getattr(part, f.name, None))
    return out


def _digest(values: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Identity:
    """The counted arguments of one run (see the module docstring)."""

    job: dict[str, Any]  # the fingerprint's arguments

    @classmethod
    def of(cls, run_args: Any) -> Identity:
        return cls(job=argument_values(run_args))

    @property
    def training(self) -> dict[str, Any]:
        return {k: v for k, v in self.job.items() if k not in EVALUATION_ONLY}

    @property
    def training_id(self) -> str:
        return _digest(self.training)

    @property
    def job_id_hash(self) -> str:
        return _digest(self.job)

    def checkpoint_record(self, job_id: str) -> dict[str, Any]:
        return {"job_id": job_id, "training_identity": self.training_id, "training_args": self.training}


def differences(recorded: dict[str, Any], current: dict[str, Any], limit: int = 4) -> list[str]:
    """``name old -> new`` for each argument both have with different values (first ``limit``)."""
    diffs = [f"{k} {recorded[k]!r} -> {current[k]!r}" for k in sorted(recorded.keys() & current.keys())
             if recorded[k] != current[k]]
    if len(diffs) > limit:
        diffs = diffs[:limit] + [f"and {len(diffs) - limit} more"]
    return diffs


def read_json(path: Path) -> dict[str, Any] | None:
    """A record, or None when it is absent or unreadable (a torn or foreign file is no record)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomic: temp file, fsync, rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def checkpoint_record(checkpoint: Path) -> dict[str, Any] | None:
    return read_json(checkpoint / CHECKPOINT_RECORD)


def finished_records(output_dir: Path) -> list[dict[str, Any]]:
    """The jobs that finished in ``output_dir``, oldest first: one training job at most (a clean
    start removes the file), plus evaluation/prediction-only jobs run there afterwards."""
    data = read_json(output_dir / FINISHED_RECORD)
    jobs = (data or {}).get("jobs")
    return [j for j in jobs if isinstance(j, dict)] if isinstance(jobs, list) else []


def record_finished(output_dir: Path, record: dict[str, Any]) -> None:
    """Add (or replace: same fingerprint) the record of a job that has written all its outputs."""
    if (record.get("job_args") or {}).get("do_train"):
        jobs = []  # a new model: what earlier jobs evaluated is no longer in this folder
    else:
        jobs = [j for j in finished_records(output_dir) if j.get("job_fingerprint") != record["job_fingerprint"]]
    write_json(output_dir / FINISHED_RECORD, {"jobs": [*jobs, record]})


def finished_data(identity: Identity, job_id: str, global_step: int | None, results: list[str]) -> dict[str, Any]:
    import datetime as dt

    return {
        "job_id": job_id,
        "finished": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "global_step": global_step,
        "job_fingerprint": identity.job_id_hash,
        "training_identity": identity.training_id,
        "job_args": identity.job,
        "results": sorted(results),
    }
