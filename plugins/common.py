"""What every built-in task shares, whatever its model head: the HF example scripts' common
model and data arguments, the pre-launch checks on them, the built-in default run, loading a
pretrained (or tiny built-in) model with one clear error, and picking a split.

Kept free of heavy imports: plugin modules import this at `tx list` time.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from tx.core.builtin_models import PREFIX, cached_build, is_builtin, save_model, train_tokenizer
from tx.core.errors import ConfigError, DataError

#: keys that mean "the user chose their own data or model": the built-in default run then stays out
USER_CHOICE_KEYS = ("model_name_or_path", "dataset_name", "train_file", "validation_file", "test_file")
#: logging and checkpoints of every built-in default run (a task's own defaults may override them)
BUILTIN_RUN_CONTROL = {"logging_steps": 25, "save_strategy": "epoch", "save_total_limit": 2, "seed": 42}


@dataclass
class ModelArguments:
    """Which model/config/tokenizer to fine-tune (the fields all HF example scripts share)."""

    model_name_or_path: str = field(
        metadata={"help": "Path to a pretrained model or a model id on huggingface.co/models "
                  "(tx-builtin:NAME for a tiny model tx builds locally)."}
    )
    config_name: str | None = field(
        default=None, metadata={"help": "Pretrained config name or path if not the same as model_name."}
    )
    tokenizer_name: str | None = field(
        default=None, metadata={"help": "Pretrained tokenizer name or path if not the same as model_name."}
    )
    cache_dir: str | None = field(
        default=None, metadata={"help": "Where to store models and datasets downloaded from the Hub."}
    )
    use_fast_tokenizer: bool = field(
        default=True, metadata={"help": "Use a fast (tokenizers-backed) tokenizer when there is one."}
    )
    model_revision: str = field(
        default="main", metadata={"help": "Model version to use: branch name, tag or commit id."}
    )
    token: str | None = field(
        default=None,
        metadata={"help": "Hub access token (else HF_TOKEN or the saved login). Never written to disk by tx."},
    )
    trust_remote_code: bool = field(
        default=False,
        metadata={"help": "Allow models/datasets on the Hub to run their own code on this machine. "
                  "Only for repositories you trust and have read."},
    )


@dataclass
class DataArguments:
    """Where the data comes from and how much of it to use (fields all HF example scripts share)."""

    dataset_name: str | None = field(default=None, metadata={"help": "Dataset name on the Hub (datasets library)."})
    dataset_config_name: str | None = field(default=None, metadata={"help": "Configuration name of that dataset."})
    train_file: str | None = field(default=None, metadata={"help": "Training data: a csv, tsv, json or jsonl file."})
    validation_file: str | None = field(
        default=None, metadata={"help": "Evaluation data (csv, tsv, json or jsonl) scored with the task metric."}
    )
    test_file: str | None = field(
        default=None, metadata={"help": "Prediction data (csv, tsv, json or jsonl) for --do_predict."}
    )
    overwrite_cache: bool = field(default=False, metadata={"help": "Re-tokenize instead of using the cached datasets."})
    preprocessing_num_workers: int | None = field(
        default=None, metadata={"help": "Number of processes for tokenization."}
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N training examples."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use only the first N evaluation examples."})
    max_predict_samples: int | None = field(default=None, metadata={"help": "Use only the first N prediction examples."})


def check_positive(data: Any, names: tuple[str, ...]) -> None:
    """Counts and lengths given by the user must be positive (None means "not set")."""
    for name in names:
        value = getattr(data, name, None)
        if value is not None and value <= 0:
            raise ConfigError(f"--{name} must be positive, got {value}")


COUNT_ARGS = ("max_train_samples", "max_eval_samples", "max_predict_samples", "preprocessing_num_workers")


def check_data_sources(args: Any, check_columns: Callable[[list[str], str], None]) -> None:
    """Data exists for every --do_* asked, local files are readable, and their columns fit
    (``check_columns(columns, path)`` raises DataError when they do not)."""
    from tx.core.data import check_file, data_files, peek_columns

    data, training = args.data, args.training
    check_positive(data, COUNT_ARGS)
    files = data_files(data)
    if not data.dataset_name and not files:
        raise ConfigError(
            "no data: give --dataset_name or at least one of --train_file/--validation_file/--test_file"
        )
    for split, path in files.items():
        check_file(path, f"--{split}_file")
        check_columns(peek_columns(path), path)
    for wanted, split, what in ((training.do_train, "train", "training"),
                                (training.do_eval, "validation", "evaluation"),
                                (training.do_predict, "test", "prediction")):
        if wanted and not (data.dataset_name or split in files):
            do_flag = {"train": "--do_train", "validation": "--do_eval", "test": "--do_predict"}[split]
            raise ConfigError(f"{do_flag} needs {what} data", hint=f"add --{split}_file or --dataset_name")


def check_model_name(name: str | None, builtin_model: str, task: str) -> None:
    """A built-in name must be the task's own; a local path must be a saved model folder."""
    if is_builtin(name) and name != PREFIX + builtin_model:
        raise ConfigError(f"unknown built-in model {name!r}", hint=f"the {task} task builds {PREFIX}{builtin_model}")
    check_local_model(name)


def check_local_model(name: str | None) -> None:
    """A local model path must be a folder with a config.json (Hub ids pass unchecked)."""
    if not name or is_builtin(name):
        return
    p = Path(name)
    looks_local = name.startswith((".", "/", "~")) or p.exists()
    if not looks_local:
        return
    p = p.expanduser()
    if not p.exists():
        raise ConfigError(f"model path {name!r} does not exist", hint="pass a local model folder or a Hub model id")
    if not p.is_dir() or not (p / "config.json").is_file():
        raise ConfigError(
            f"model path {name!r} has no config.json",
            hint="pass a folder written by save_pretrained() or a Hub model id",
        )


def check_tokenizer_source(args: Any) -> None:
    """Before launch, after the cheap checks: a local tokenizer folder holds a tokenizer that can
    read the data (tx.core.modelcheck; Hub ids are checked by `tx run` itself)."""
    from tx.core import modelcheck
    from tx.core.data import data_files

    modelcheck.check_tokenizer(args.model, data_files(args.data).values())


def builtin_run(task: str, model_key: str, data_dir: Path, ext: str, given: set[str]) -> dict[str, Any]:
    """Arguments of `tx run TASK` with nothing chosen: shipped data, tiny built-in model.
    Empty when the user picked their own model or data."""
    if given & set(USER_CHOICE_KEYS):
        return {}
    return {
        "model_name_or_path": PREFIX + model_key,
        "train_file": str(data_dir / f"train.{ext}"),
        "validation_file": str(data_dir / f"validation.{ext}"),
        "test_file": str(data_dir / f"test.{ext}"),
        "output_dir": f"tx-output/{task}",
        "do_train": True,
        "do_eval": True,
        "do_predict": True,
        **BUILTIN_RUN_CONTROL,
    }


def tiny_tokenizer(texts: Iterable[str], vocab_size: int, roles: dict[str, str], max_length: int,
                   **template: str) -> Any:
    """A tokenizer for a tiny built-in model: ``train_tokenizer`` with the special tokens of
    ``roles`` (role -> token, e.g. {"pad_token": "<pad>"}; ids follow this order) set by role.
    ``template`` holds train_tokenizer's bos/eos/unk."""
    tokenizer: Any = train_tokenizer(texts, vocab_size, special_tokens=list(roles.values()), **template)
    for role, token in roles.items():
        setattr(tokenizer, role, token)
    tokenizer.model_max_length = max_length
    return tokenizer


def save_tiny(out: Path, model_cls: Any, config: Any, tokenizer: Any) -> None:
    """Initialize ``model_cls(config)`` from a fixed seed and save it with its tokenizer."""
    import torch

    torch.manual_seed(0)
    save_model(model_cls(config), out)  # not save_pretrained: see save_model
    tokenizer.save_pretrained(out)


def hub_kwargs(margs: Any) -> dict[str, Any]:
    """The keyword arguments every from_pretrained call of a run gets."""
    return {"cache_dir": margs.cache_dir, "revision": margs.model_revision,
            "token": margs.token, "trust_remote_code": margs.trust_remote_code}


def model_path(margs: Any, builtin_model: str, build: Callable[[Path], None]) -> str:
    """The name or folder to load: a tiny built-in model is built once in the tx cache."""
    name = margs.model_name_or_path
    return str(cached_build(builtin_model, build)) if is_builtin(name) else name


@contextmanager
def loading_model(name: str) -> Iterator[None]:
    """Turn a from_pretrained failure (unknown id, offline, missing files) into one line."""
    try:
        yield
    except OSError as exc:
        raise ConfigError(
            f"cannot load model {name!r}: {str(exc).splitlines()[0]}",
            hint="check the name or path (offline? pass a local model folder)",
        ) from None


def model_card(data: Any, task: str, **extra: Any) -> dict[str, Any]:
    """Model-card fields of a run (TaskParts.card): task, tags and where the data came from."""
    return {"tasks": task, "tags": ["tx", task], "dataset": data.dataset_name or "local files",
            "dataset_args": data.dataset_config_name, **extra}


def pick_split(raw: Any, split: str, limit: int | None) -> Any:
    """One split of a DatasetDict, cut to ``limit`` rows; missing or empty is a DataError."""
    if split not in raw:
        raise DataError(f"the dataset has no {split!r} split", hint=f"available splits: {', '.join(raw) or '(none)'}")
    ds = raw[split]
    if limit is not None:
        ds = ds.select(range(min(len(ds), limit)))
    if len(ds) == 0:
        raise DataError(f"the {split} split is empty", hint="check the data file")
    return ds
