"""Where a run starts from: nothing to do (finished), a checkpoint of this job, a clean start, or
a refusal. One pure-ish decision (it only reads the output dir), made twice with the same
inputs: before launch by `tx run` (core/run.py: refuse before anything is written) and in the
worker, which then acts on it (core/trainer.py). The rules are documented in
docs/troubleshooting.md ("Reruns, resumes and --overwrite_output_dir").
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from tx.core.atomic_checkpoint import discard
from tx.core.checkpoints import CHECKPOINT_RE, PARTIAL_DIR, check_output_dir, checkpoints
from tx.core.errors import AlreadyFinished, ConfigError
from tx.core.jobidentity import (CHECKPOINT_RECORD, FINISHED_RECORD, Identity, checkpoint_record,
                                 differences, finished_records)

#: What a finished job wrote besides its model: removed by a clean start so no old number survives
#: (Trainer.save_metrics merges into an existing all_results.json).
RESULT_FILES = ("all_results.json", "train_results.json", "eval_results.json", "predict_results.json",
                "trainer_state.json", "generated_predictions.txt", "predict_results.txt")


@dataclass(frozen=True)
class Start:
    """How the run starts: resume from ``resume`` (None: from scratch), after removing what other
    jobs left when ``clean``; ``note``: one line for the user (rank 0 prints it)."""

    resume: Path | None = None
    clean: bool = False
    note: str | None = None


def _job_name(record: dict) -> str:
    return str(record.get("job_id") or "an earlier job")


def decide(output_dir: Path, identity: Identity, *, do_train: bool, overwrite: bool,
           resume_from_checkpoint: str | None, restarted: bool = False, job_id: str | None = None) -> Start:
    """Raise AlreadyFinished (exit 0) or ConfigError, or say where training starts."""
    records = finished_records(output_dir) if output_dir.is_dir() else []
    for done in records:
        same_job = restarted and job_id is not None and done.get("job_id") == job_id
        same_args = not overwrite and not differences(done.get("job_args") or {}, identity.job, limit=0) \
            and bool(done.get("job_args"))
        if same_job or same_args:
            finished = done
            step = finished.get("global_step")
            raise AlreadyFinished(
                f"{output_dir} holds this job, already finished ({_job_name(finished)}"
                + (f", step {step}" if step is not None else "") + f", {finished.get('finished', '?')}); nothing to do",
                hint="its results are left as they are; pass --overwrite_output_dir to run it again from scratch")
    # the training job that finished here (evaluation-only jobs run afterwards do not count)
    trained = [r for r in records if (r.get("job_args") or {}).get("do_train")]
    finished = trained[-1] if trained else None
    if do_train and finished is not None and not (overwrite or restarted or resume_from_checkpoint):
        _refuse_finished(output_dir, finished, identity)
    check_output_dir(output_dir, do_train=do_train or restarted, overwrite=overwrite or restarted,
                     resume_from_checkpoint=resume_from_checkpoint)
    if not do_train:
        return Start()
    found = checkpoints(output_dir)
    last = found[-1] if found else None
    if restarted:  # the scheduler restarted this job: its own newest checkpoint, never a clean start
        if last is not None:
            _refuse_foreign(last, identity)
        return Start(resume=last)
    if resume_from_checkpoint:  # the user chose the checkpoint: resumed as asked, differences said
        record = checkpoint_record(Path(resume_from_checkpoint))
        diffs = differences(record.get("training_args") or {}, identity.training) if record else []
        note = (f"resuming {resume_from_checkpoint} of job {_job_name(record or {})} as asked, although its "
                f"arguments differ: {', '.join(diffs)}") if diffs else None
        return Start(resume=Path(resume_from_checkpoint), note=note)
    if overwrite:
        ours = [c for c in found if _same_training(c, identity)]
        if found and len(ours) == len(found) and finished is None:
            return Start(resume=last, note=f"resuming {last.name}: an interrupted run of these same arguments "
                         "already made the clean start --overwrite_output_dir asks for")
        return Start(clean=True)
    if last is None:
        return Start()
    record = checkpoint_record(last)
    if record is None:
        return Start(resume=last, note=f"{last.name} has no tx job record (written by an older tx or another "
                     "tool): resuming it as this job; use --overwrite_output_dir to start from scratch instead")
    _refuse_foreign(last, identity)
    return Start(resume=last)


def _same_training(checkpoint: Path, identity: Identity) -> bool:
    record = checkpoint_record(checkpoint)
    return record is not None and not differences(record.get("training_args") or {}, identity.training, limit=0)


def _refuse_foreign(checkpoint: Path, identity: Identity) -> None:
    record = checkpoint_record(checkpoint)
    if record is None:
        return
    diffs = differences(record.get("training_args") or {}, identity.training)
    if diffs:
        raise ConfigError(
            f"{checkpoint} belongs to job {_job_name(record)}, trained with other arguments ({', '.join(diffs)})",
            hint="run with that job's arguments to resume it, pass --overwrite_output_dir to start from scratch "
                 "(its checkpoints and results are removed), or choose another --output_dir")


def _refuse_finished(output_dir: Path, finished: dict, identity: Identity) -> None:
    recorded = finished.get("job_args") or {}
    step = finished.get("global_step")
    at = f" at step {step}" if step is not None else ""
    if not differences({k: v for k, v in recorded.items() if k in identity.training}, identity.training, limit=0):
        raise ConfigError(
            f"{output_dir} holds job {_job_name(finished)}, whose training with these arguments finished{at}",
            hint=f"to evaluate or predict with its model, drop --do_train and pass --model_name_or_path {output_dir}; "
                 "--overwrite_output_dir trains again from scratch")
    diffs = differences(recorded, identity.job)
    raise ConfigError(
        f"{output_dir} holds job {_job_name(finished)}, finished{at} with other arguments ({', '.join(diffs)})",
        hint="choose another --output_dir, or pass --overwrite_output_dir to replace it (its checkpoints and results "
             "are removed)")


def clean_start(output_dir: Path) -> list[str]:
    """Remove what earlier jobs left that could be resumed or read as this job's results; return
    the names removed. The finished record goes first, so an interrupted clean start never leaves
    a folder that looks finished. Model files stay (this job's save_model replaces them)."""
    if not output_dir.is_dir():
        return []
    removed = []
    for name in (FINISHED_RECORD, *RESULT_FILES):
        path = output_dir / name
        if path.is_file():
            path.unlink()
            removed.append(name)
    for child in sorted(output_dir.iterdir()):
        if CHECKPOINT_RE.match(child.name) and child.is_dir():
            discard(child, output_dir / PARTIAL_DIR)
            removed.append(child.name)
    shutil.rmtree(output_dir / PARTIAL_DIR, ignore_errors=True)
    return removed


__all__ = ["CHECKPOINT_RECORD", "RESULT_FILES", "Start", "clean_start", "decide"]
