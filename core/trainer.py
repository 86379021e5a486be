"""The shared Trainer core: one run of any task, with the HF example scripts' semantics and
outputs (train/eval/predict results, trainer_state.json, saved model, model card)."""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from tx.core import distributed, hfargs, lifecycle, threads
from tx.core.atomic_checkpoint import atomic
from tx.core.builtin_models import is_builtin
from tx.core.errors import Interrupted
from tx.core.interrupt import StopFlag, make_callback, signal_name
from tx.core.jobidentity import Identity, finished_data, record_finished
from tx.core.jobspec import JobSpec
from tx.core.lengths import length_aware
from tx.core.lifecycle import RESULT_FILES
from tx.core.loss import final_log_callback, with_true_loss
from tx.core.plugins import Plugins
from tx.core.task import RunContext, Task

logger = logging.getLogger("tx")


def _setup_logging(training: Any) -> None:
    import datasets
    import transformers

    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    level = training.get_process_log_level()
    if training.should_log and training.log_level == "passive":
        level = logging.WARNING  # the bar and tx's summary say what matters; --log_level info for more
    logger.setLevel(logging.INFO if training.should_log else level)
    datasets.utils.logging.set_verbosity(level)
    transformers.utils.logging.set_verbosity(level)


def run(task: Task, job: JobSpec, plugins: Plugins) -> dict[str, Any]:
    """Train/evaluate/predict as the job says; return all metrics. Raises TxError subclasses."""
    started = time.monotonic()
    # Several processes without CUDA: use_cpu + gloo, decided here where the devices are known.
    base, notes = distributed.worker_args(job.args)
    parsed = hfargs.parse(task, [], base=base)
    args = parsed.run_args
    training, txargs = args.training, args.tx
    if txargs.logging_dir:
        os.environ.setdefault("TENSORBOARD_LOGGING_DIR", txargs.logging_dir)
    _setup_logging(training)
    distributed.check_world_size(training)  # N processes must form one N-process job
    if notes and distributed.is_main_rank():
        print("tx: note: " + "; ".join(notes), file=sys.stderr, flush=True)

    output_dir = Path(training.output_dir)
    # Where training starts (lifecycle.py): finished already, refused, a checkpoint of this job, or a
    # clean start. A scheduler restart of this job (Slurm requeue, TX_RESTART_COUNT >= 1) continues from
    # its newest checkpoint, whatever --overwrite_output_dir/--resume_from_checkpoint meant for the first start.
    # The main process decides (and cleans) first; the others then read the folder it left.
    restarted = os.environ.get("TX_RESTART_COUNT", "0") not in ("", "0")
    identity = Identity.of(args)
    with training.main_process_first(local=False, desc="tx output dir"):
        start = lifecycle.decide(output_dir, identity, do_train=training.do_train, overwrite=txargs.overwrite_output_dir,
                                 resume_from_checkpoint=training.resume_from_checkpoint, restarted=restarted,
                                 job_id=job.job_id)
        if start.clean and training.process_index == 0:
            removed = lifecycle.clean_start(output_dir)
            if removed:
                print(f"tx: note: --overwrite_output_dir: removed what earlier jobs left in {output_dir} "
                      f"({', '.join(removed[:6])}{' ...' if len(removed) > 6 else ''})", file=sys.stderr, flush=True)
    if start.note and training.process_index == 0:
        print(f"tx: note: {start.note}", file=sys.stderr, flush=True)
    last = start.resume
    from transformers import Seq2SeqTrainer, Trainer, set_seed

    # A signal while loading exits at once (128+N); during training it saves first (interrupt.py).
    flag = StopFlag(save_on_interrupt=txargs.save_on_interrupt)
    flag.install()
    set_seed(training.seed)
    # CPU training: no more intra-op threads than the cores other processes leave free, chosen once
    # per job and kept in its checkpoints, so a resumed run computes what an uninterrupted one does (threads.py)
    tuner = threads.ThreadTuner(tune=threads.should_tune()) if training.device.type == "cpu" else None
    parts = task.build(RunContext(args=args, job=job, last_checkpoint=str(last) if last else None))

    callbacks = list(plugins.trainer_callbacks(job=job))
    if tuner is not None:
        callbacks.append(threads.callback(tuner))
    callbacks.append(make_callback(flag))
    callbacks.append(final_log_callback())  # train_loss averaged over all processes (loss.py)
    if training.dataloader_pin_memory and training.device.type == "cpu":
        training.dataloader_pin_memory = False  # pinning only speeds copies to a GPU; on CPU torch warns mid-bar
    seq2seq = task.training_arguments == "seq2seq"
    # with_true_loss: the loss of N processes equals that of one (loss.py); length_aware: evaluation over
    # length-sorted rows with results in dataset order, shuffled length-grouped training batches (lengths.py)
    trainer_cls = atomic(with_true_loss(length_aware(Seq2SeqTrainer if seq2seq else Trainer)))  # checkpoint-N complete or absent
    trainer = trainer_cls(
        model=parts.model,
        args=training,
        train_dataset=parts.train_dataset,
        eval_dataset=parts.eval_dataset,
        processing_class=parts.tokenizer,
        data_collator=parts.data_collator,
        compute_metrics=parts.compute_metrics,
        preprocess_logits_for_metrics=parts.preprocess_logits_for_metrics,
        callbacks=callbacks or None,
    )
    gen = parts.generation_kwargs if seq2seq else {}
    results: dict[str, Any] = {}

    if training.do_train:
        checkpoint = str(last) if last else None
        trainer._tx_identity = identity.checkpoint_record(job.job_id)  # written into each checkpoint
        if checkpoint and trainer.is_world_process_zero():
            logger.info("resuming from %s", checkpoint)
        outcome = trainer.train(resume_from_checkpoint=checkpoint)
        if getattr(trainer.state, "tx_interrupted", False):
            raise interrupted(flag.signum, trainer.state.global_step, output_dir)
        trainer.save_model()
        if flag.requested:  # the signal came after the last step: the model is saved, stop here
            raise Interrupted(f"stopped by {signal_name(flag.signum)} after training; the model is saved in {output_dir}",
                              hint="evaluation and prediction were skipped", signum=flag.signum)
        metrics = dict(outcome.metrics)
        metrics["train_samples"] = len(parts.train_dataset)
        trainer.log_metrics("train", metrics)
        trainer.save_metrics("train", metrics)
        trainer.save_state()
        results.update({f"train_{k}" if not k.startswith("train_") else k: v for k, v in metrics.items()})

    if training.do_eval:
        metrics = trainer.evaluate(metric_key_prefix="eval", **gen)
        metrics["eval_samples"] = len(parts.eval_dataset)
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)
        results.update(metrics)

    if training.do_predict:
        output = trainer.predict(parts.predict_dataset, metric_key_prefix="predict", **gen)
        metrics = dict(output.metrics)
        metrics["predict_samples"] = len(parts.predict_dataset)
        trainer.log_metrics("predict", metrics)
        trainer.save_metrics("predict", metrics)
        results.update(metrics)
        if trainer.is_world_process_zero() and parts.write_predictions is not None:
            parts.write_predictions(output, output_dir)

    if trainer.is_world_process_zero():
        name = args.model.model_name_or_path
        card = {k: v for k, v in parts.card.items() if v}
        if not is_builtin(name):
            card.setdefault("finetuned_from", name)
        try:
            trainer.create_model_card(**card)
        except Exception as exc:  # a model card must never fail a finished run
            logger.warning("could not write the model card: %s", exc)
        # every output is written: a rerun of this job is "already finished" (lifecycle.py)
        written = [p.name for p in output_dir.iterdir() if p.is_file() and p.name in RESULT_FILES]
        record_finished(output_dir, finished_data(identity, job.job_id,
                                                  trainer.state.global_step if training.do_train else None, written))
        print_summary(output_dir, results, time.monotonic() - started)
    return results


def interrupted(signum: int | None, step: int, output_dir: Path) -> Interrupted:
    """The one line an interrupted training ends with: where its checkpoint is, how to resume."""
    checkpoint = output_dir / f"checkpoint-{step}"
    saved = f"checkpoint saved in {checkpoint}" if checkpoint.is_dir() else "no checkpoint could be saved"
    return Interrupted(f"training stopped by {signal_name(signum)} at step {step}; {saved}",
                       hint="Run the same command again to resume", signum=signum)


def print_summary(output_dir: Path, results: dict[str, Any], seconds: float) -> None:
    keys = [k for k in results if k.endswith(("_loss", "rougeL", "bleu", "accuracy", "f1", "mse", "combined_score"))
            and not k.endswith("_runtime")]
    minutes, secs = divmod(int(seconds), 60)
    lines = [f"\ntx: finished in {minutes}m{secs:02d}s. Outputs in {output_dir}"]
    if keys:
        lines.append("  " + " | ".join(f"{k} {results[k]:.4g}" for k in keys if isinstance(results[k], (int, float))))
    for name in ("all_results.json", "generated_predictions.txt", "predict_results.txt"):
        if (output_dir / name).exists():
            lines.append(f"  {name}: {output_dir / name}")
    print("\n".join(lines), flush=True)
