"""The Task interface: what a task plugin provides to the shared Trainer core.

A task is small: its argument dataclasses (HF names), a built-in default run, cheap checks
before launch, and ``build()`` which turns parsed arguments into model, data, collator and
metrics inside the worker. The core does everything else (output dir rules, resume,
train/eval/predict, result files, model card).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Literal

if TYPE_CHECKING:
    from tx.core.jobspec import JobSpec


@dataclass
class RunArgs:
    """The parsed arguments of one run: the task's two dataclasses, training and tx options."""

    model: Any
    data: Any
    training: Any  # transformers.TrainingArguments or Seq2SeqTrainingArguments
    tx: Any  # tx.core.hfargs.TxArguments


@dataclass
class RunContext:
    """What ``Task.build`` gets inside the worker."""

    args: RunArgs
    job: JobSpec
    last_checkpoint: str | None = None

    @property
    def is_main_process(self) -> bool:
        return bool(getattr(self.args.training, "process_index", 0) == 0)


@dataclass
class TaskParts:
    """What a task hands the Trainer core. Datasets may be None when the split is not used."""

    model: Any
    tokenizer: Any
    data_collator: Any = None
    train_dataset: Any = None
    eval_dataset: Any = None
    predict_dataset: Any = None
    compute_metrics: Callable[..., dict[str, float]] | None = None
    preprocess_logits_for_metrics: Callable[..., Any] | None = None
    # Called on the main process with the PredictionOutput of trainer.predict and output_dir.
    write_predictions: Callable[[Any, Path], None] | None = None
    # Extra keyword arguments for evaluate()/predict() (e.g. max_length, num_beams).
    generation_kwargs: dict[str, Any] = field(default_factory=dict)
    # Extra model-card fields: dataset name, tags, language.
    card: dict[str, Any] = field(default_factory=dict)


class Task:
    """Base class for task plugins. Subclass it and register an instance in
    ``tx_register_tasks``. Import heavy libraries inside methods, not at module level."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: which HF training-arguments class the task uses
    training_arguments: ClassVar[Literal["default", "seq2seq"]] = "default"

    def argument_classes(self) -> tuple[type, type]:
        """Return the (ModelArguments, DataTrainingArguments) dataclasses, HF field names."""
        raise NotImplementedError

    def default_args(self, given: set[str]) -> dict[str, Any]:
        """Arguments of the built-in default run (`tx run TASK` with no flags).

        ``given`` holds the names of the arguments the user set (command line or config file),
        so a task can keep its built-in data and model out of a run where the user chose
        their own. The result sits below the config file and the command line.
        """
        return {}

    def validate(self, args: RunArgs) -> None:
        """Cheap checks before anything launches: raise ConfigError/DataError with one clear
        line. May read file headers; must not load models."""

    def data_files(self, args: RunArgs) -> list[str]:
        """Local files the run reads (mounted into containers, checked before launch)."""
        data = args.data
        return [
            getattr(data, name)
            for name in ("train_file", "validation_file", "test_file")
            if getattr(data, name, None)
        ]

    def build(self, ctx: RunContext) -> TaskParts:
        """Load model, tokenizer and datasets, preprocess, and return the parts (worker only)."""
        raise NotImplementedError
