"""`tx run TASK --help`: tx's flags, the task's arguments, the launcher's options, then the
training arguments in a few groups, each with its plain type and the default a run really uses.

Defaults are not read off the dataclasses (HF's defaults) but from two resolved runs, the way
``tx run`` builds them (core defaults < the task's defaults < the launcher's adjustments): one
with the user's own model and data ("default"), and the built-in default run, `tx run TASK` with
nothing chosen ("built-in run"), where the task sets its own epochs, learning rate, etc.
`--help` shows the commonly used training arguments; `--help-all` every argument in full.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import json
import re
import textwrap
from typing import Any, Iterable

from tx.core import hfargs, options

WIDTH = 100
#: training arguments by group, in the order shown; arguments not named here fall in a group by
#: their prefix (GROUP_PREFIXES) or in "other"
GROUPS: dict[str, tuple[str, ...]] = {
    "what and where": ("output_dir", "do_train", "do_eval", "do_predict", "resume_from_checkpoint", "seed",
                       "data_seed", "full_determinism", "ignore_data_skip", "remove_unused_columns",
                       "label_names"),
    "batch and schedule": ("per_device_train_batch_size", "per_device_eval_batch_size",
                           "gradient_accumulation_steps", "num_train_epochs", "max_steps",
                           "train_sampling_strategy", "length_column_name", "warmup_steps", "lr_scheduler_type",
                           "lr_scheduler_kwargs", "auto_find_batch_size", "average_tokens_across_devices",
                           "sortish_sampler"),
    "optimizer": ("learning_rate", "weight_decay", "optim", "optim_args", "adam_beta1", "adam_beta2", "adam_epsilon",
                  "max_grad_norm", "label_smoothing_factor", "optim_target_modules", "neftune_noise_alpha"),
    "evaluation and saving": ("eval_strategy", "eval_steps", "save_strategy", "save_steps", "save_total_limit",
                              "load_best_model_at_end", "metric_for_best_model", "greater_is_better",
                              "predict_with_generate", "generation_max_length", "generation_num_beams",
                              "generation_config", "prediction_loss_only", "include_for_metrics",
                              "batch_eval_metrics", "enable_jit_checkpoint",
                              "restore_callback_states_from_checkpoint"),
    "logging": ("logging_steps", "logging_strategy", "logging_first_step", "report_to", "run_name", "disable_tqdm",
                "log_level", "log_level_replica", "log_on_each_node", "logging_nan_inf_filter",
                "include_num_input_tokens_seen", "project", "skip_memory_metrics"),
    "performance and precision": ("bf16", "fp16", "tf32", "use_cpu", "dataloader_num_workers",
                                  "gradient_checkpointing", "torch_compile", "ddp_backend", "deepspeed",
                                  "bf16_full_eval", "fp16_full_eval", "activation_checkpointing",
                                  "activation_checkpointing_kwargs", "gradient_checkpointing_kwargs",
                                  "use_liger_kernel", "liger_kernel_config", "use_cache",
                                  "torch_empty_cache_steps", "accelerator_config", "parallelism_config",
                                  "fsdp", "fsdp_config", "local_rank", "debug"),
    "hub": ("push_to_hub", "hub_model_id", "hub_strategy", "hub_token", "hub_private_repo", "hub_always_push",
            "hub_revision"),
    "other": (),
}
GROUP_PREFIXES = (("eval_", "evaluation and saving"), ("save_", "evaluation and saving"),
                  ("logging_", "logging"), ("log_", "logging"), ("trackio_", "logging"),
                  ("dataloader_", "performance and precision"), ("ddp_", "performance and precision"),
                  ("fsdp", "performance and precision"), ("torch_compile", "performance and precision"),
                  ("hub_", "hub"), ("adam_", "optimizer"), ("optim", "optimizer"), ("lr_", "batch and schedule"),
                  ("warmup", "batch and schedule"), ("generation_", "evaluation and saving"))
#: the training arguments plain `--help` shows (`--help-all` shows every one)
COMMON_TRAINING = (
    "output_dir", "do_train", "do_eval", "do_predict", "resume_from_checkpoint", "seed",
    "per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps", "num_train_epochs",
    "max_steps", "train_sampling_strategy", "warmup_steps", "lr_scheduler_type",
    "learning_rate", "weight_decay", "optim",
    "eval_strategy", "eval_steps", "save_strategy", "save_steps", "save_total_limit", "load_best_model_at_end",
    "metric_for_best_model", "predict_with_generate", "generation_max_length", "generation_num_beams",
    "logging_steps", "report_to", "disable_tqdm",
    "bf16", "fp16", "use_cpu", "activation_checkpointing", "ddp_backend", "deepspeed",
    "push_to_hub", "hub_model_id",
)
#: arguments of the HF example scripts that tasks share and few runs change: plain `--help` leaves
#: them to `--help-all` (a task's other arguments are all shown)
RARE_TASK_ARGS = ("config_name", "tokenizer_name", "cache_dir", "use_fast_tokenizer", "model_revision",
                  "resize_position_embeddings", "overwrite_cache", "preprocessing_num_workers")
#: arguments whose value is a local path (core/run.py makes them absolute), or may be one
PATH_NAMES = ("output_dir", "train_file", "validation_file", "test_file", "resume_from_checkpoint",
              "logging_dir", "cache_dir")
NAME_OR_PATH_NAMES = ("model_name_or_path", "config_name", "tokenizer_name")
#: tx's own flags of `tx run`
TX_FLAGS = (
    ("--launcher NAME", "where the workers run (default: local); one of {launchers}"),
    ("--config FILE", "YAML or JSON with the same keys as the flags (paths relative to the file); flags given win"),
    ("--from JOB_FILE", "rerun a tx-job.yaml written by an earlier tx run (flags given override it)"),
    ("--print-config", "print the resolved flags as a config file (YAML) for --config; run nothing"),
    ("--dry-run", "print the job spec and the launch plan; launch nothing"),
    ("--help-all", "every argument with its full help (--help shows the common ones)"),
)
UNSET = object()


# -- what each argument is -----------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Arg:
    """One argument as help shows it."""

    name: str
    kind: str
    required: bool
    help: str


def arguments(cls: type, parser: argparse.ArgumentParser) -> list[Arg]:
    """The init fields of ``cls`` with the plain type the command line takes."""
    by_flag = {flag: action for action in parser._actions for flag in action.option_strings}
    out = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        action = by_flag.get(f"--{f.name}")
        if action is None:
            continue
        out.append(Arg(f.name, plain_type(f.name, action), bool(action.required), " ".join(str(action.help or "").split())))
    return out


def plain_type(name: str, action: argparse.Action) -> str:
    """int, float, str, bool, path, choice of a|b|c, list of ... — not Python's type names."""
    if action.choices:
        values = [c.value if isinstance(c, enum.Enum) else c for c in action.choices]
        kind = "choice of " + "|".join(str(v) for v in values)
    elif action.type is bool or getattr(action.type, "__name__", "") == "string_to_bool" or action.nargs == 0:
        kind = "bool"
    elif action.type is int:
        kind = "int"
    elif action.type is float:
        kind = "float"
    elif name in PATH_NAMES:
        kind = "path"
    elif name in NAME_OR_PATH_NAMES:
        kind = "name or path"
    elif name == "deepspeed":
        kind = "path or preset"
    elif isinstance(action.type, type) and issubclass(action.type, enum.Enum):
        kind = "choice of " + "|".join(str(m.value) for m in action.type)
    elif action.type in (str, None):
        kind = "str"
    else:
        kind = "json"
    if action.nargs == "+":
        kind = "list of " + kind
    return kind


def group_of(name: str) -> str:
    for group, names in GROUPS.items():
        if name in names:
            return group
    for prefix, group in GROUP_PREFIXES:
        if name.startswith(prefix):
            return group
    return "other"


# -- the defaults a run uses -----------------------------------------------------------------
def effective_defaults(task: Any, launcher: Any, given: set[str], placeholders: dict[str, Any]) -> dict[str, Any]:
    """Every argument's value in a run where the user set only ``placeholders`` (the names of
    ``given``): resolved like `tx run` does (core defaults, the task's, the launcher's
    adjustments) and read back from the constructed argument objects, so HF's own processing of
    its arguments shows too."""
    from tx.core.defaults import core_defaults
    from tx.core.run import light_training_arguments

    base = {**core_defaults(), **task.default_args(set(given)), **placeholders}
    with light_training_arguments():
        parsed = hfargs.parse(task, [], base=base)
        try:
            opts = options.build_options(launcher.options, {})
            adjusted, _ = launcher.adjust_args(dict(parsed.values), opts, known=hfargs.field_names(task), given=set(given))
            if adjusted != parsed.values:
                parsed = hfargs.parse(task, [], base=adjusted)
        except Exception:  # a launcher that needs options to say anything: its defaults are HF's then
            pass
    values: dict[str, Any] = {}
    run_args = parsed.run_args
    for obj in (run_args.model, run_args.data, run_args.training, run_args.tx):
        for f in dataclasses.fields(obj):
            if f.init:
                values[f.name] = getattr(obj, f.name, None)
    return values


def show(value: Any) -> str:
    """A value as help prints it (YAML-like scalars; lists comma-separated)."""
    if isinstance(value, enum.Enum):
        value = value.value
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ", ".join(show(v) for v in value) if value else "none"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)  # a config object HF builds from a dict (accelerator_config)
    if isinstance(value, dict):
        return json.dumps(value)
    if isinstance(value, str) and (not value or value != value.strip() or value in ("none", "true", "false")):
        return json.dumps(value)  # quoted where the bare text would read as something else
    return str(value)


def default_text(arg: Arg, yours: dict[str, Any], builtin: dict[str, Any], placeholders: dict[str, Any]) -> str:
    """`[default: V]`, `[default: V; built-in run: W]`, `[required; built-in run: W]`."""
    mine = yours.get(arg.name, UNSET)
    theirs = builtin.get(arg.name, UNSET)
    parts = []
    if arg.name in placeholders or mine is UNSET:
        if arg.required:
            parts.append("required")
    else:
        parts.append(f"default: {show(mine)}")
    if theirs is not UNSET and (arg.name in placeholders or mine is UNSET or show(mine) != show(theirs)):
        if not (theirs is None and arg.name in placeholders):
            parts.append(f"built-in run: {show(theirs)}")
    return f"[{'; '.join(parts)}]" if parts else ""


# -- rendering ---------------------------------------------------------------------------------
def _first_sentence(text: str) -> str:
    match = re.match(r"(.+?[.!?])(?=\s+[A-Z`]|$)", text)
    return match.group(1) if match else text


def _short_kind(kind: str, full: bool, most: int = 6) -> str:
    """A long choice list cut in plain --help (`--help-all` shows every value)."""
    if full or not kind.startswith("choice of "):
        return kind
    values = kind[len("choice of "):].split("|")
    if len(values) <= most:
        return kind
    return "choice of " + "|".join(values[:most - 1]) + f"|... ({len(values)} values, --help-all lists them)"


def _row(flag: str, kind: str, default: str, help_text: str, full: bool) -> list[str]:
    kind = _short_kind(kind, full)
    head = f"  {flag}  " + " ".join(part for part in (kind, default) if part)
    if full:
        lines = [head]
        if help_text:
            lines += textwrap.wrap(help_text, width=WIDTH, initial_indent="      ", subsequent_indent="      ")
        return lines
    short = _first_sentence(help_text)
    if not short:
        return [head]
    if len(head) + 2 + len(short) <= WIDTH:
        return [f"{head}  {short}"]
    short = short if len(short) <= WIDTH - 6 else short[: WIDTH - 9].rstrip() + "..."
    return [head, "      " + short]


def _section(title: str, rows: Iterable[list[str]]) -> list[str]:
    body = [line for row in rows for line in row]
    return ["", f"{title}:", *body] if body else []


def _plain_kind(kind: str) -> str:
    """options.describe's flag types in the words of the rest of the page."""
    kind = kind.replace("TEXT (repeatable)", "str, repeatable")
    kind = re.sub(r"^[A-Z]+\b", lambda m: {"TEXT": "str", "INT": "int", "FLOAT": "float", "BOOL": "bool"}.get(
        m.group(0), m.group(0).lower()), kind)
    if re.match(r"^[\w.-]+(\|[\w.-]+)+", kind):
        kind = "choice of " + kind
    return kind.replace("[default: True]", "[default: true]").replace("[default: False]", "[default: false]")


def render_help(plugins: Any, task_name: str | None, launcher_name: str | None, full: bool = False) -> str:
    launcher = plugins.launchers.get(launcher_name or "local")
    task = plugins.tasks.get(task_name) if task_name else None
    shown = task.name if task else "TASK"
    lines = [f"usage: tx run {shown} [--launcher NAME] [launcher flags] [--config FILE] [--from JOB_FILE] "
             "[--print-config] [--dry-run] [arguments]"]
    if task:
        lines += ["", f"{task.name}: {task.description}"]
    lines += _section("tx flags", ([f"  {flag:<16}  {text.format(launchers=', '.join(plugins.launchers.names()))}"]
                                   for flag, text in TX_FLAGS))
    if task is None:
        lines += _launcher_lines(launcher, full)
        lines += ["", "tasks: " + ", ".join(plugins.tasks.names()), "`tx run TASK --help` lists a task's arguments."]
        return "\n".join(lines)

    classes = hfargs.argument_classes(task)
    parser = hfargs._make_parser(classes)
    model_cls, data_cls, training_cls, tx_cls = classes
    own_data = {"train_file": "train.jsonl"}  # stands for the user's own data in the "default" run
    placeholders = {**{a.name: "your-model" for a in arguments(model_cls, parser) if a.required}, **own_data}
    yours = effective_defaults(task, launcher, set(placeholders), placeholders)
    builtin = effective_defaults(task, launcher, set(), {})
    lines += ["", "Defaults are those a run uses. \"default\": with your own model or data; \"built-in run\":",
              f"`tx run {task.name}` with no model or data given (shipped sample data, a tiny model)."]
    if not full:
        lines.append("Shown: the common arguments, one line of help each. --help-all: every argument, full help.")

    def rows(args: Iterable[Arg]) -> list[list[str]]:
        return [_row(f"--{a.name}", a.kind, default_text(a, yours, builtin, placeholders), a.help, full) for a in args]

    def task_args(cls: type) -> list[Arg]:
        return [a for a in arguments(cls, parser) if full or a.name not in RARE_TASK_ARGS]

    lines += _section("model arguments", rows(task_args(model_cls)))
    lines += _section("data arguments", rows(task_args(data_cls)))
    tx_args = [a for a in arguments(tx_cls, parser) if full or not a.help.startswith("Deprecated")]
    lines += _section("tx arguments", rows(tx_args))
    lines += _launcher_lines(launcher, full)

    training = arguments(training_cls, parser)
    import transformers

    lines += ["", f"training arguments (transformers {transformers.__version__} {training_cls.__name__}"
              + ("):" if full else f"; the common ones, --help-all lists all {len(training)}):")]
    for group in GROUPS:
        members = [a for a in training if group_of(a.name) == group and (full or a.name in COMMON_TRAINING)]
        order = {name: i for i, name in enumerate(GROUPS[group])}
        members.sort(key=lambda a: order.get(a.name, len(order)))
        if members:
            lines += [f" {group}:"] + [line for row in rows(members) for line in row]
    return "\n".join(lines)


def _launcher_lines(launcher: Any, full: bool) -> list[str]:
    lines = ["", f"launcher {launcher.name!r}: {launcher.description}"]
    reason = launcher.unavailable_reason()
    if reason:
        lines.append(f"  not usable here: {reason}")
    rows = [_row(_with_aliases(flag, help_text), _plain_kind(kind), "", help_text, full)
            for flag, kind, help_text in options.describe(launcher.options)]
    if rows:
        lines += _section(f"launcher {launcher.name!r} flags", rows)
    else:
        lines.append("  (no options)")
    return lines


def _with_aliases(flag: str, help_text: str) -> str:
    """A launcher flag with its native spellings (``--nproc-per-node | --num-cores``), so users of
    torchrun, deepspeed or xla_spawn find the name they know even where the help is shortened."""
    marker = " (also: "
    if marker not in help_text:
        return flag
    names = help_text.rsplit(marker, 1)[1].rstrip(")").split(", ")
    return " | ".join([flag, *names])
