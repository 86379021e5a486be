"""Numeric ranges of the training arguments, checked before launch.

TrainingArguments accepts many values that only fail later, inside torch, after the model and
the data are loaded (``--learning_rate=-1e-3``: "Invalid learning rate" from the optimizer;
``--per_device_train_batch_size 0``: the sampler), or that transformers quietly reads as
something else (``--max_steps 0`` or ``-5`` as "no limit", a negative ``--max_grad_norm`` as
"no clipping", a negative seed as a numpy error). Each rule here names the flag, the range and
what was given, so `tx run` refuses in one line before anything is written. Pure: no imports
beyond the standard library, no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from tx.core.errors import ConfigError

SEED_MAX = 2**32 - 1  # numpy's seed range (transformers.set_seed seeds numpy too)


@dataclass(frozen=True)
class Rule:
    """``name`` must lie in [low, high] (``low_open``/``high_open``: the bound itself excluded);
    None (flag not set) always passes. ``hint`` says what to give instead."""

    name: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    hint: str | None = None

    def ok(self, value: float) -> bool:
        if isinstance(value, float) and math.isnan(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        if self.high is not None and (value >= self.high if self.high_open else value > self.high):
            return False
        return True

    def requirement(self) -> str:
        if self.low is not None and self.high is not None:
            left = "(" if self.low_open else "["
            right = ")" if self.high_open else "]"
            return f"in {left}{_num(self.low)}, {_num(self.high)}{right}"
        if self.low == 0 and not self.low_open:
            return "zero or more"
        if self.low == 0:
            return "positive"
        if self.low is not None:
            return f"{'more than' if self.low_open else 'at least'} {_num(self.low)}"
        return f"{'less than' if self.high_open else 'at most'} {_num(self.high)}"


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


#: TrainingArguments / Seq2SeqTrainingArguments (a field the class lacks is skipped)
TRAINING_RULES = (
    Rule("learning_rate", low=0, hint="give a learning rate such as 5e-5"),
    Rule("per_device_train_batch_size", low=1),
    Rule("per_device_eval_batch_size", low=1),
    Rule("gradient_accumulation_steps", low=1),
    Rule("eval_accumulation_steps", low=1),
    Rule("num_train_epochs", low=0),
    Rule("warmup_steps", low=0, hint="give a number of steps, or a fraction of the training below 1"),
    Rule("weight_decay", low=0),
    Rule("adam_beta1", low=0, high=1, high_open=True),
    Rule("adam_beta2", low=0, high=1, high_open=True),
    Rule("adam_epsilon", low=0),
    Rule("max_grad_norm", low=0, hint="0 turns gradient clipping off"),
    Rule("label_smoothing_factor", low=0, high=1, high_open=True),
    Rule("logging_steps", low=0, low_open=True, hint="a number of steps, or a fraction of the training below 1"),
    Rule("save_steps", low=0, low_open=True, hint="a number of steps, or a fraction of the training below 1"),
    Rule("eval_steps", low=0, low_open=True, hint="a number of steps, or a fraction of the training below 1"),
    Rule("eval_delay", low=0),
    Rule("save_total_limit", low=0),
    Rule("seed", low=0, high=SEED_MAX),
    Rule("data_seed", low=0, high=SEED_MAX),
    Rule("dataloader_num_workers", low=0),
    Rule("dataloader_prefetch_factor", low=1),
    Rule("torch_empty_cache_steps", low=1),
    Rule("neftune_noise_alpha", low=0),
    Rule("ddp_timeout", low=1),
    Rule("generation_max_length", low=1),
    Rule("generation_num_beams", low=1),
)


def check_rules(values: Any, rules: tuple[Rule, ...] = TRAINING_RULES) -> None:
    """Raise ConfigError for the first value of ``values`` (an object with the rules' names as
    attributes) outside its range."""
    for rule in rules:
        value = getattr(values, rule.name, None)
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if not rule.ok(value):
            raise ConfigError(f"--{rule.name} must be {rule.requirement()}, got {value}",
                              hint=rule.hint or "change it on the command line or in the --config file")


def check_training(training: Any) -> None:
    """Every rule of :data:`TRAINING_RULES`, plus how much to train: ``--max_steps`` is a positive
    number of steps or -1 (train ``--num_train_epochs``), and training must have some length."""
    check_rules(training)
    max_steps = getattr(training, "max_steps", -1)
    if max_steps is not None and max_steps != -1 and max_steps < 1:
        raise ConfigError(f"--max_steps must be a positive number of steps or -1 (no limit), got {max_steps}",
                          hint="give e.g. --max_steps 1000, or leave it out to train --num_train_epochs")
    if getattr(training, "do_train", False) and (max_steps is None or max_steps < 1) \
            and getattr(training, "num_train_epochs", 1) == 0:
        raise ConfigError("--num_train_epochs 0 with no --max_steps leaves nothing to train",
                          hint="give --num_train_epochs above 0 or --max_steps, or drop --do_train")


def check(run_args: Any) -> None:
    """The range checks of one run (tx.core.task.RunArgs), before launch."""
    check_training(run_args.training)


#: where the HF Trainer writes when no output_dir is given (TrainingArguments.__post_init__)
HF_DEFAULT_OUTPUT_DIR = "trainer_output"


def fill_output_dir(values: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    """Pure apart from ``notes``: ``values`` with output_dir set to transformers' own default,
    ``trainer_output`` (in the current directory), when nobody gave one, as a plain HF script
    does; a note for `tx run` to print says so."""
    if values.get("output_dir"):
        return values
    notes.append(f"no --output_dir given: writing to ./{HF_DEFAULT_OUTPUT_DIR} (the Trainer's default)")
    return {**values, "output_dir": HF_DEFAULT_OUTPUT_DIR}
