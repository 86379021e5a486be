"""Shell completion (`tx --install-completion`): task names, launcher names, launcher option
values, flags, and job ids for `tx status/logs/cancel`.

`tx run` takes its arguments raw (HF flags are parsed later, over the task's dataclasses), so
Typer cannot complete them from declared parameters: :class:`RunCommand` completes them itself
from the words typed so far. Everything here must be fast (it runs on every TAB): plugins are
loaded (cheap by design), transformers is never imported, and any failure completes nothing
rather than printing a traceback into the shell.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Literal, get_args, get_origin

import typer
from typer.core import CompletionItem, TyperCommand

#: tx's own flags of `tx run`, with what they do
RUN_FLAGS = {
    "--launcher": "where and how to run (local, torchrun, deepspeed, slurm, ...)",
    "--config": "a YAML/JSON file of arguments",
    "--from": "rerun a job exactly from its tx-job.yaml",
    "--dry-run": "print the job spec and the plan, launch nothing",
    "--print-config": "print the resolved flags as a config file (rerun with --config)",
    "--help": "the task's, tx's and the launcher's arguments and the common training arguments",
    "--help-all": "every argument, with its full help",
}
#: flags taking a value that completes as a file (the shell's default completion does it)
FILE_FLAGS = ("--config", "--from")
#: the HF TrainingArguments flags people type most (the full list needs transformers: too slow)
COMMON_TRAINING_FLAGS = (
    "output_dir", "do_train", "do_eval", "do_predict", "per_device_train_batch_size",
    "per_device_eval_batch_size", "gradient_accumulation_steps", "learning_rate", "num_train_epochs",
    "max_steps", "warmup_steps", "weight_decay", "logging_steps", "eval_strategy", "eval_steps",
    "save_strategy", "save_steps", "save_total_limit", "report_to", "seed", "bf16", "fp16", "use_cpu",
    "resume_from_checkpoint", "push_to_hub", "hub_model_id", "predict_with_generate",
    "generation_max_length", "generation_num_beams", "disable_tqdm", "load_best_model_at_end",
    "metric_for_best_model", "ddp_backend", "deepspeed", "optim", "lr_scheduler_type",
    "dataloader_num_workers",
)


def _plugins(ctx: Any) -> Any:
    """Load plugins the way the CLI does, including `-p MODULE` typed before the command."""
    from tx.core import plugins

    modules: list[str] = []
    root = ctx.find_root() if ctx is not None else None
    if root is not None:
        modules = list(root.params.get("plugin") or [])
    return plugins.load(extra_modules=modules)


def _named(registry: Any, incomplete: str) -> list[tuple[str, str]]:
    return [(item.name, item.description) for item in registry if item.name.startswith(incomplete)]


def complete_job_ids(ctx: typer.Context, incomplete: str) -> list[tuple[str, str]]:
    """tx job ids and scheduler ids (Slurm job id, container id) of recorded jobs, newest first."""
    try:
        from tx.core.jobs import all_records

        out: list[tuple[str, str]] = []
        for record in all_records():
            about = f"{record.get('launcher', '?')} job, {record.get('task', '?')}, submitted {record.get('submitted', '?')}"
            for ref in (record.get("job_id"), record.get("scheduler_id")):
                if ref and str(ref).startswith(incomplete) and all(str(ref) != o[0] for o in out):
                    out.append((str(ref), about))
        return out
    except Exception:
        return []


def literal_choices(options_cls: type) -> dict[str, list[str]]:
    """Pure: `--flag` -> allowed values, for the launcher options typed as a Literal."""
    from tx.core.options import flag_name

    out: dict[str, list[str]] = {}
    try:
        hints = typing.get_type_hints(options_cls)
    except Exception:
        return out
    for f in dataclasses.fields(options_cls):
        tp = hints.get(f.name)
        candidates = [tp, *get_args(tp)] if get_origin(tp) is not Literal else [tp]
        for candidate in candidates:
            if get_origin(candidate) is Literal:
                out[flag_name(f.name)] = [str(c) for c in get_args(candidate)]
                break
    return out


def run_flags(task: Any, launcher: Any) -> list[tuple[str, str]]:
    """Flags worth offering after `tx run TASK`: tx's, the launcher's, the task's own HF
    arguments, tx's extra HF arguments and the common training arguments."""
    from tx.core.hfargs import TxArguments
    from tx.core.options import describe

    out: list[tuple[str, str]] = list(RUN_FLAGS.items())
    if launcher is not None:
        for flag, _kind, help_text in describe(launcher.options):
            out.append((flag.split(" / ")[0], help_text))
    classes: list[type] = [TxArguments]
    if task is not None:
        try:
            classes = [*task.argument_classes(), TxArguments]
        except Exception:
            pass
    for cls in classes:
        for f in dataclasses.fields(cls):
            help_text = f.metadata.get("help", "")
            if f.init and not help_text.startswith("Deprecated"):
                out.append((f"--{f.name}", help_text))
    out += [(f"--{name}", "training argument") for name in COMMON_TRAINING_FLAGS]
    seen: set[str] = set()
    return [(flag, h) for flag, h in out if not (flag in seen or seen.add(flag))]


def complete_run(ctx: Any, words: list[str], incomplete: str) -> list[tuple[str, str]]:
    """Completions for `tx run WORDS INCOMPLETE` (``words``: what is typed after `run`)."""
    from tx.core.errors import TxError
    from tx.core.run import DEFAULT_LAUNCHER, split_tx_flags

    previous = [w for w in words if w != "="]  # bash splits `--launcher=x` into three words
    last = previous[-1] if previous else ""
    if last in FILE_FLAGS:
        return []  # the shell falls back to file names
    plugins = _plugins(ctx)
    if last == "--launcher":
        return _named(plugins.launchers, incomplete)
    if last == "--inner":  # placement launchers (slurm, docker) wrap a process launcher
        return _named([lc for lc in plugins.launchers if not lc.scheduler], incomplete)
    try:
        flags = split_tx_flags(previous)
    except TxError:
        return []
    launcher = plugins.launchers.get(flags.launcher) if flags.launcher in plugins.launchers else (
        plugins.launchers.get(DEFAULT_LAUNCHER) if DEFAULT_LAUNCHER in plugins.launchers else None)
    if launcher is not None:
        choices = literal_choices(launcher.options).get(last)
        if choices is not None:
            return [(c, "") for c in choices if c.startswith(incomplete)]
    if incomplete.startswith("-"):
        task = plugins.tasks.get(flags.task) if flags.task in plugins.tasks else None
        return [(f, h) for f, h in run_flags(task, launcher) if f.startswith(incomplete)]
    if flags.task is None and not flags.rest and not flags.from_job:
        return _named(plugins.tasks, incomplete)
    return []


class RunCommand(TyperCommand):
    """`tx run`: completes from the raw words, since its arguments are not declared."""

    def shell_complete(self, ctx: Any, incomplete: str) -> list[CompletionItem]:
        try:
            pairs = complete_run(ctx, list(ctx.args), incomplete)
        except Exception:
            return []
        return [CompletionItem(value, help=help_text or None) for value, help_text in pairs]
