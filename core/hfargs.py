"""Parse Hugging Face style arguments (`--per_device_train_batch_size=4`, bare booleans,
`--no_x`, unambiguous prefixes) over a task's dataclasses, like the HF example scripts do.

One path for both sides: `tx run` parses the command line on top of task defaults and the
config file; the worker re-parses the saved values with an empty command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import enum
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from tx.core.errors import ConfigError

if TYPE_CHECKING:
    from tx.core.task import RunArgs, Task

#: Values never written to a job file; passed to workers through the environment instead.
SECRET_FIELDS = ("token", "hub_token")


@dataclass
class TxArguments:
    """Options tx adds, and flags transformers 5 removed that the HF guide still uses."""

    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Allow a non-empty output_dir: train from scratch instead of resuming "
                  "from its last checkpoint (transformers 4 semantics, kept by tx)."},
    )
    save_on_interrupt: bool = field(
        default=True,
        metadata={"help": "On SIGTERM/SIGINT/SIGUSR1/SIGUSR2 save a checkpoint at the next step and exit."},
    )
    push_to_hub_model_id: str | None = field(
        default=None, metadata={"help": "Deprecated alias of --hub_model_id."}
    )
    evaluation_strategy: str | None = field(
        default=None, metadata={"help": "Deprecated alias of --eval_strategy."}
    )
    no_cuda: bool = field(default=False, metadata={"help": "Deprecated alias of --use_cpu."})
    group_by_length: bool = field(
        default=False,
        metadata={"help": "Deprecated alias of --train_sampling_strategy group_by_length."},
    )
    logging_dir: str | None = field(
        default=None, metadata={"help": "TensorBoard log directory (sets TENSORBOARD_LOGGING_DIR)."}
    )


# legacy name -> (new name, converter)
_LEGACY = {
    "push_to_hub_model_id": ("hub_model_id", lambda v: v),
    "evaluation_strategy": ("eval_strategy", lambda v: v),
    "no_cuda": ("use_cpu", lambda v: True),
    "group_by_length": ("train_sampling_strategy", lambda v: "group_by_length"),
}


def training_arguments_class(task: Task) -> type:
    if task.training_arguments == "seq2seq":
        from transformers import Seq2SeqTrainingArguments

        return Seq2SeqTrainingArguments
    from transformers import TrainingArguments

    return TrainingArguments


def argument_classes(task: Task) -> tuple[type, type, type, type]:
    model_cls, data_cls = task.argument_classes()
    return (model_cls, data_cls, training_arguments_class(task), TxArguments)


def _make_parser(classes: tuple[type, ...]) -> argparse.ArgumentParser:
    from transformers import HfArgumentParser

    class _Parser(HfArgumentParser):
        def error(self, message: str) -> None:  # argparse would print usage and exit(2)
            text = _argparse_message(message)
            raise ConfigError(text, hint=_argparse_hint(text))

    parser = _Parser(classes, add_help=False)
    # `--learning_rate -1e-3`: argparse takes a word starting with "-" for a flag unless it looks
    # like a negative number, and its pattern (-1, -.5, -1.5) misses exponents, so the flag "expected
    # one argument". A negative number in any float spelling is a value (then range-checked).
    parser._negative_number_matcher = NEGATIVE_NUMBER
    return parser


#: a negative int or float, exponent included: -1, -0.5, -.5, -1e-3, -2.5E+4, -inf
NEGATIVE_NUMBER = re.compile(r"^-((\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|inf|infinity|nan)$", re.IGNORECASE)


def _argparse_message(message: str) -> str:
    message = message.replace("the following arguments are required:", "missing required argument")
    message = re.sub(r"argument (--\w+)/--[\w-]+:", r"argument \1:", message)  # one spelling of the flag
    return re.sub(r"(--\w+)/--[\w-]+", r"\1", message)


def _argparse_hint(message: str) -> str | None:
    """What to do about argparse's complaint (its message says what is wrong)."""
    for needle, hint in (("invalid float value", "give a number, e.g. 3e-4 or 0.5"),
                         ("invalid int value", "give a whole number, e.g. 8"),
                         ("expected one argument", "give a value after the flag (--name value or --name=value)"),
                         ("invalid choice", "use one of the listed values"),
                         ("missing required argument", "add it to the command line or the --config file")):
        if needle in message:
            return hint
    return None


def field_defaults(classes: tuple[type, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for cls in classes:
        for f in dataclasses.fields(cls):
            if not f.init:
                continue
            if f.default is not dataclasses.MISSING:
                out[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                out[f.name] = f.default_factory()
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


@dataclass
class ParsedArgs:
    """Result of parsing: canonical non-default values (what the job file stores), the secrets
    taken out of them, and the constructed dataclasses."""

    values: dict[str, Any]
    secrets: dict[str, str]
    run_args: RunArgs


def parse(
    task: Task,
    argv: list[str],
    base: dict[str, Any] | None = None,
    transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> ParsedArgs:
    """Parse ``argv`` over ``base`` (task defaults merged with the config file).

    ``transform`` rewrites the parsed values before the dataclasses are built (e.g. making
    paths absolute), so both see the same values.
    """
    classes = argument_classes(task)
    parser = _make_parser(classes)
    known: dict[str, list[argparse.Action]] = {}
    for action in parser._actions:
        if action.dest != "help":
            known.setdefault(action.dest, []).append(action)
    pristine = _unset_values(parser)
    for key, value in (base or {}).items():
        if key not in known:
            raise ConfigError(unknown_flag_message(key, list(known), where="config key"))
        for action in known[key]:
            action.default = value
            action.required = False

    namespace, unknown = parser.parse_known_args(argv)
    if unknown:
        first = unknown[0]
        if first.startswith("-"):
            raise ConfigError(unknown_flag_message(first.lstrip("-").split("=")[0], list(known)))
        raise ConfigError(
            f"unexpected argument {first!r}",
            hint="flags take the form --name value or --name=value; quote values with spaces",
        )
    values = {k: _plain(v) for k, v in vars(namespace).items()}
    if transform is not None:
        values = transform(values)
    return build(classes, values, pristine)


def _unset_values(parser: argparse.ArgumentParser) -> dict[str, Any]:
    """Each flag's value when not given (argparse runs `type` on string defaults)."""
    required = [a for a in parser._actions if a.required]
    for action in required:
        action.required = False
    try:
        namespace, _ = parser.parse_known_args([])
    finally:
        for action in required:
            action.required = True
    return {k: _plain(v) for k, v in vars(namespace).items()}


def build(classes: tuple[type, ...], values: dict[str, Any], unset: dict[str, Any]) -> ParsedArgs:
    """Construct the dataclasses; ``unset`` holds each flag's value when not given, so only
    what the user (or task defaults / config) chose is stored."""
    values = dict(values)
    for old, (new, convert) in _LEGACY.items():
        legacy_value = values.get(old)
        if legacy_value not in (None, False):
            values[new] = convert(legacy_value)
        values.pop(old, None)
    if values.get("deepspeed"):  # a preset name (zero2...) becomes the shipped file's path
        from tx.core.deepspeed_config import resolve as resolve_deepspeed

        values["deepspeed"] = resolve_deepspeed(values["deepspeed"])

    check_conflicts(values)
    secrets = {k: values[k] for k in SECRET_FIELDS if values.get(k)}
    stored = {k: v for k, v in values.items() if k not in SECRET_FIELDS and (k not in unset or unset[k] != v)}

    instances = []
    for cls in classes:
        names = {f.name for f in dataclasses.fields(cls) if f.init}
        kwargs = {k: v for k, v in values.items() if k in names}
        try:
            instances.append(cls(**kwargs))
        except ConfigError:
            raise
        except (ValueError, TypeError, AssertionError, ImportError) as exc:
            raise ConfigError(_post_init_message(exc)) from None

    from tx.core.task import RunArgs

    run_args = RunArgs(model=instances[0], data=instances[1], training=instances[2], tx=instances[3])
    return ParsedArgs(values=stored, secrets=secrets, run_args=run_args)


#: flags that cannot be set together, checked before TrainingArguments (whose own checks on a
#: machine without a GPU would name only one of them)
CONFLICTS = (("fp16", "bf16"), ("fp16_full_eval", "bf16_full_eval"))


def check_conflicts(values: dict[str, Any]) -> None:
    for a, b in CONFLICTS:
        if values.get(a) and values.get(b):
            raise ConfigError(f"--{a} and --{b} cannot be used together", hint="pick one")


def _post_init_message(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if len(text) > 400:
        text = text[:400] + "..."
    return f"invalid arguments: {text}"


def unknown_flag_message(name: str, known: list[str], where: str = "flag") -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    shown = f"--{name}" if where == "flag" else repr(name)
    text = f"unknown {where} {shown}"
    if close:
        text += f" (did you mean {'--' if where == 'flag' else ''}{close[0]}?)"
    return text + "; see `tx run TASK --help` for the accepted arguments"


def help_rows(cls: type) -> list[tuple[str, str, str]]:
    """(flag, type [default], help) for `tx run TASK --help`."""
    rows = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        kind = getattr(f.type, "__name__", None) or str(f.type)
        kind = kind.replace("typing.", "").replace("Optional", "")
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = "..."
        else:
            default = "required"
        default = _plain(default)
        rows.append((f"--{f.name}", f"{kind} [{default}]", f.metadata.get("help", "")))
    return rows


def field_names(task: Task) -> set[str]:
    """Every HF argument name the task accepts (its dataclasses, TrainingArguments, TxArguments)."""
    return {f.name for cls in argument_classes(task) for f in dataclasses.fields(cls)}
