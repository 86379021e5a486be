"""The text classification task (HF run_classification.py): one or more text columns -> a label.

The kind of problem follows the label column, as in the HF script: string or int labels are
single-label classification, lists of labels are multi-label classification, floats are
regression (or force it with --do_regression). Label names are kept in the model config
(label2id/id2label) and written to predict_results.txt.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from tx.core.errors import ConfigError, DataError
from tx.core.hookspecs import hookimpl
from tx.core.task import RunArgs, RunContext, Task, TaskParts
from tx.plugins.common import (
    DataArguments,
    ModelArguments,
    builtin_run,
    check_data_sources,
    check_model_name,
    check_tokenizer_source,
    check_positive,
    hub_kwargs,
    loading_model,
    model_card,
    model_path,
    pick_split,
    save_tiny,
    tiny_tokenizer,
)

HERE = Path(__file__).resolve().parent
METRICS_DIR = HERE / "metrics"
SHIPPED_METRICS = ("accuracy", "f1", "mse")
#: metrics that take an ``average`` argument (single-label: macro; multi-label: micro, as HF)
AVERAGED_METRICS = ("f1", "precision", "recall")
SINGLE, MULTI, REGRESSION = "single_label_classification", "multi_label_classification", "regression"
DEFAULT_TEXT_COLUMNS = ("sentence", "text")

logger = logging.getLogger("tx")


@dataclass
class ClassificationModelArguments(ModelArguments):
    ignore_mismatched_sizes: bool = field(
        default=False,
        metadata={"help": "Load a pretrained model whose classification head has another number of labels "
                  "(the head is then initialized anew)."},
    )


@dataclass
class ClassificationDataArguments(DataArguments):
    do_regression: bool = field(  # type: ignore[assignment]  # bool, not bool | None: a bare flag as in HF
        default=None,
        metadata={"help": "Regression instead of classification (default: regression when the labels are floats)."},
    )
    text_column_names: str | None = field(
        default=None,
        metadata={"help": "Text column(s), comma-separated; several are joined with --text_column_delimiter "
                  "(default: the 'sentence' column, else 'text')."},
    )
    text_column_delimiter: str | None = field(
        default=" ", metadata={"help": "What joins several text columns into one text."}
    )
    train_split_name: str | None = field(
        default=None, metadata={"help": "Split of the dataset used for training (default: 'train')."}
    )
    validation_split_name: str | None = field(
        default=None, metadata={"help": "Split used for evaluation (default: 'validation', else 'test')."}
    )
    test_split_name: str | None = field(
        default=None, metadata={"help": "Split used for --do_predict (default: 'test')."}
    )
    remove_splits: str | None = field(
        default=None, metadata={"help": "Splits to drop from the dataset, comma-separated."}
    )
    remove_columns: str | None = field(
        default=None, metadata={"help": "Columns to drop from every split, comma-separated."}
    )
    label_column_name: str | None = field(
        default=None, metadata={"help": "Label column (default: 'label')."}
    )
    max_seq_length: int = field(
        default=128,
        metadata={"help": "Maximum input length in tokens after tokenization (capped at the tokenizer's limit); "
                  "longer inputs are truncated."},
    )
    pad_to_max_length: bool = field(
        default=True,
        metadata={"help": "Pad every input to max_seq_length; with --pad_to_max_length false, pad each batch "
                  "to its longest input."},
    )
    shuffle_train_dataset: bool = field(
        default=False, metadata={"help": "Shuffle the training split (before --max_train_samples)."}
    )
    shuffle_seed: int = field(default=42, metadata={"help": "Seed of that shuffle."})
    metric_name: str | None = field(
        default=None,
        metadata={"help": "Metric(s), comma-separated: shipped accuracy, f1, mse, a local evaluate module folder "
                  "or a Hub metric (default: accuracy; multi-label: f1; regression: mse). Several add "
                  "combined_score, their mean."},
    )


# -- small pure helpers -------------------------------------------------------------------------
def split_names(value: str | None) -> list[str]:
    """'a, b,' -> ['a', 'b'] (the HF comma-separated list flags)."""
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def text_columns(data: Any, columns: Sequence[str]) -> list[str]:
    """The text columns of a split: --text_column_names, else 'sentence', else 'text'."""
    names = split_names(data.text_column_names)
    if names:
        return names
    for name in DEFAULT_TEXT_COLUMNS:
        if name in columns:
            return [name]
    raise DataError(
        f"no text column: neither {' nor '.join(repr(c) for c in DEFAULT_TEXT_COLUMNS)} is a column "
        f"(columns: {', '.join(columns) or '(none)'})",
        hint="pass --text_column_names COLUMN (or COL1,COL2 to join several)",
    )


def label_column(data: Any) -> str:
    return data.label_column_name or "label"


def problem_type(feature: Any, do_regression: bool | None) -> str:
    """Regression for float labels (or when asked), multi-label for list labels, else single-label."""
    if do_regression is not None:
        return REGRESSION if do_regression else (MULTI if _is_list(feature) else SINGLE)
    if getattr(feature, "dtype", None) in ("float16", "float32", "float64"):
        return REGRESSION
    return MULTI if _is_list(feature) else SINGLE


def _is_list(feature: Any) -> bool:
    return isinstance(feature, (list, tuple)) or type(feature).__name__ in ("Sequence", "List", "LargeList")


def sorted_labels(values: Iterable[Any]) -> list[str]:
    """Label names as strings (the keys of label2id), numeric order when all are integers;
    -1 means "no label" (HF) and is left out."""
    names = {str(v) for v in values if v is not None and str(v) != "-1"}
    if names and all(_is_int(n) for n in names):
        return sorted(names, key=int)
    return sorted(names)


def _is_int(text: str) -> bool:
    return text.lstrip("-").isdigit()


def metric_names(data: Any, kind: str) -> list[str]:
    names = split_names(data.metric_name)
    if names:
        return names
    return ["mse"] if kind == REGRESSION else ["f1"] if kind == MULTI else ["accuracy"]


def metric_source(name: str) -> str:
    """Shipped module folder, a local module folder, or a Hub name (needs the network)."""
    if name in SHIPPED_METRICS:
        return str(METRICS_DIR / name)
    return str(Path(name).expanduser().resolve()) if Path(name).expanduser().exists() else name


def with_combined(result: dict[str, float]) -> dict[str, float]:
    """Several scores get their mean as combined_score (as HF does)."""
    if len(result) > 1:
        result = {**result, "combined_score": float(sum(result.values()) / len(result))}
    return result


def prediction_lines(predictions: Any, kind: str, id2label: Mapping[int, str]) -> list[str]:
    """The rows of predict_results.txt: index, tab, label name(s) or value."""
    lines = ["index\tprediction"]
    for index, item in enumerate(predictions):
        if kind == REGRESSION:
            lines.append(f"{index}\t{float(item):3.3f}")
        elif kind == MULTI:
            lines.append(f"{index}\t{[id2label[i] for i, on in enumerate(item) if on]}")
        else:
            lines.append(f"{index}\t{id2label[int(item)]}")
    return lines


def metric_info(description: str, inputs: str, config_name: str | None, value: str = "int32") -> Any:
    """The MetricInfo of the shipped metric modules: one value per prediction, or (config
    "multilabel") a row of 0/1 per prediction."""
    import datasets
    import evaluate

    kind: Any = datasets.Value(value)
    if config_name == "multilabel":
        kind = datasets.Sequence(kind)
    return evaluate.MetricInfo(description=description, citation="", inputs_description=inputs,
                               features=datasets.Features({"predictions": kind, "references": kind}))


class ClassificationTask(Task):
    name = "classification"
    description = "Classify texts or text pairs (single-label, multi-label, regression); accuracy/F1/MSE."
    training_arguments = "default"
    data_dir = HERE / "data"
    builtin_model = "bert-tiny-classification-v1"

    def argument_classes(self) -> tuple[type, type]:
        return ClassificationModelArguments, ClassificationDataArguments

    def default_args(self, given: set[str]) -> dict[str, Any]:
        out = builtin_run(self.name, self.builtin_model, self.data_dir, "csv", given)
        if out:
            out.update({
                "max_seq_length": 64,
                "pad_to_max_length": False,
                "num_train_epochs": 5,
                "learning_rate": 3e-3,
                "per_device_train_batch_size": 32,
                "per_device_eval_batch_size": 128,
            })
        return out

    # -- before launch ------------------------------------------------------------------------
    def validate(self, args: RunArgs) -> None:
        data = args.data
        check_positive(data, ("max_seq_length",))
        check_data_sources(args, lambda columns, path: self._check_file_columns(columns, path, data))
        check_model_name(args.model.model_name_or_path, self.builtin_model, self.name)
        for name in split_names(data.metric_name):
            if name not in SHIPPED_METRICS and not Path(name).expanduser().exists() and _offline():
                raise ConfigError(
                    f"--metric_name {name!r} is not shipped with tx and cannot be downloaded offline",
                    hint=f"use {', '.join(SHIPPED_METRICS)} or a local evaluate module folder",
                )
        check_tokenizer_source(args)  # last: may load a tokenizer

    def _check_file_columns(self, columns: list[str], path: str, data: Any) -> None:
        from tx.core.data import require_columns

        removed = split_names(data.remove_columns)
        for column in removed:
            require_columns(columns, {"--remove_columns": column}, path)
        kept = [c for c in columns if c not in removed]
        for column in text_columns(data, kept):
            require_columns(kept, {"--text_column_names": column}, path)
        if path != data.test_file:  # a test file may come without labels
            require_columns(kept, {"--label_column_name": label_column(data)}, path)

    # -- inside the worker ----------------------------------------------------------------------
    def build(self, ctx: RunContext) -> TaskParts:
        from tx.core.data import load_raw_datasets

        margs, data, training = ctx.args.model, ctx.args.data, ctx.args.training
        raw = self._arrange_splits(load_raw_datasets(data, margs), data)
        kind, labels = self._labels(raw, data)
        model, tokenizer = self._load_model(margs, kind, labels)
        label_to_id = self._label_map(model, kind, labels, training.do_train, raw)
        max_length = min(data.max_seq_length, tokenizer.model_max_length)
        if data.max_seq_length > tokenizer.model_max_length:
            logger.warning("--max_seq_length %s exceeds the model's %s; using %s",
                           data.max_seq_length, tokenizer.model_max_length, max_length)

        train = eval_ = predict = None
        if training.do_train:
            source = raw["train"] if "train" in raw else None
            if source is not None and data.shuffle_train_dataset:
                raw["train"] = source.shuffle(seed=data.shuffle_seed)
            train = pick_split(raw, "train", data.max_train_samples)
        if training.do_eval:
            split = "validation" if "validation" in raw or "test" not in raw else "test"
            if split == "test":
                logger.warning("no validation split: evaluating on the test split")
            eval_ = pick_split(raw, split, data.max_eval_samples)
        if training.do_predict:
            predict = pick_split(raw, "test", data.max_predict_samples)
        encode = self._encoder(tokenizer, data, kind, label_to_id, max_length)
        with training.main_process_first(desc="dataset tokenization"):
            train, eval_, predict = (encode(ds, name) for ds, name in
                                     ((train, "train"), (eval_, "validation"), (predict, "test")))
        if predict is not None and "labels" in predict.column_names:
            predict = predict.remove_columns("labels")  # may hold -1 for "unlabeled"

        from transformers import DataCollatorWithPadding, default_data_collator

        if data.pad_to_max_length:
            collator = default_data_collator
        else:
            collator = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8 if training.fp16 else None)
        return TaskParts(
            model=model,
            tokenizer=tokenizer,
            data_collator=collator,
            train_dataset=train,
            eval_dataset=eval_,
            predict_dataset=predict,
            compute_metrics=self._metrics_fn(metric_names(data, kind), kind),
            write_predictions=self._writer(kind, model.config.id2label),
            card=model_card(data, "text-classification"),
        )

    @staticmethod
    def _arrange_splits(raw: Any, data: Any) -> Any:
        """--remove_splits, --*_split_name, --remove_columns and --label_column_name, as HF."""
        def need_split(name: str, flag: str) -> None:
            if name not in raw:
                raise DataError(f"{flag} {name!r} is not a split of the dataset",
                                hint=f"splits: {', '.join(raw) or '(none)'}")

        for name in split_names(data.remove_splits):
            need_split(name, "--remove_splits")
            raw.pop(name)
        for split, chosen, flag in (("train", data.train_split_name, "--train_split_name"),
                                    ("validation", data.validation_split_name, "--validation_split_name"),
                                    ("test", data.test_split_name, "--test_split_name")):
            if chosen and chosen != split:
                need_split(chosen, flag)
                raw[split] = raw.pop(chosen)
        removed = split_names(data.remove_columns)
        for split in list(raw):
            present = [c for c in removed if c in raw[split].column_names]
            if present:
                raw[split] = raw[split].remove_columns(present)
        name = label_column(data)
        if name != "label":
            for split in list(raw):
                if name in raw[split].column_names:
                    if "label" in raw[split].column_names:
                        raw[split] = raw[split].remove_columns("label")
                    raw[split] = raw[split].rename_column(name, "label")
        return raw

    @staticmethod
    def _labels(raw: Any, data: Any) -> tuple[str, list[str] | None]:
        """Problem type and (for classification) the sorted label names of all splits."""
        labelled = [s for s in ("train", "validation", "test") if s in raw and "label" in raw[s].column_names]
        labelled += [s for s in raw if s not in labelled and "label" in raw[s].column_names]
        if not labelled:
            raise DataError(f"no split has a {label_column(data)!r} column",
                            hint="pass --label_column_name with the label column")
        feature = raw[labelled[0]].features["label"]
        kind = problem_type(feature, data.do_regression)
        if kind == REGRESSION:
            from datasets import Value

            for split in labelled:
                try:
                    raw[split] = raw[split].cast_column("label", Value("float32"))
                except (TypeError, ValueError) as exc:
                    raise DataError(f"the {split} labels are not numbers: {str(exc).splitlines()[0]}",
                                    hint="check the label column, or pass --do_regression false") from None
            return kind, None
        names = getattr(feature, "names", None)  # a ClassLabel keeps its names in order
        if names:
            return kind, list(names)
        values: list[Any] = []
        for split in labelled:
            column = raw[split]["label"]
            if None in column:
                raise DataError(f"row {list(column).index(None) + 1} of the {split} split has no label",
                                hint="fill in every label or remove those rows")
            values.extend([v for row in column for v in row] if kind == MULTI else column)
        labels = sorted_labels(values)
        if len(labels) < 2:
            raise DataError(f"classification needs at least two different labels, found {labels or 'none'}",
                            hint="check --label_column_name, or pass --do_regression for numeric targets")
        return kind, labels

    def _load_model(self, margs: Any, kind: str, labels: list[str] | None) -> tuple[Any, Any]:
        from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

        name = model_path(margs, self.builtin_model, self._build_builtin)
        common = hub_kwargs(margs)
        with loading_model(margs.model_name_or_path):
            config = AutoConfig.from_pretrained(
                margs.config_name or name, num_labels=1 if labels is None else len(labels),
                finetuning_task="text-classification", **common,
            )
            config.problem_type = kind
            tokenizer = AutoTokenizer.from_pretrained(
                margs.tokenizer_name or name, use_fast=margs.use_fast_tokenizer, **common
            )
            try:
                model = AutoModelForSequenceClassification.from_pretrained(
                    name, config=config, ignore_mismatched_sizes=margs.ignore_mismatched_sizes, **common
                )
            except (RuntimeError, ValueError) as exc:
                if "size mismatch" not in str(exc) and "mismatch" not in str(exc).lower():
                    raise
                raise ConfigError(
                    f"model {margs.model_name_or_path!r} has a classification head for another number of labels",
                    hint="pass --ignore_mismatched_sizes to start a new head",
                ) from None
        if tokenizer.pad_token is None and tokenizer.eos_token is not None:  # GPT-style models
            tokenizer.pad_token = tokenizer.eos_token
            model.config.pad_token_id = tokenizer.eos_token_id
        return model, tokenizer

    @staticmethod
    def _label_map(model: Any, kind: str, labels: list[str] | None, training: bool, raw: Any) -> dict[str, int] | None:
        """Training: the data's labels define label2id/id2label in the config (saved with the
        model). Otherwise the fine-tuned model's own label2id maps the data's labels."""
        if kind == REGRESSION or labels is None:
            return None
        if training:
            mapping = {label: i for i, label in enumerate(labels)}
            model.config.label2id = mapping
            model.config.id2label = {i: label for label, i in mapping.items()}
            return mapping
        mapping = {str(k): int(v) for k, v in model.config.label2id.items()}
        unknown = [label for label in labels if label not in mapping]
        if unknown:
            raise DataError(
                f"labels {', '.join(unknown[:5])} are not in the model's label2id ({', '.join(mapping)})",
                hint="evaluate a model fine-tuned on these labels, or train with --do_train",
            )
        return mapping

    @staticmethod
    def _encoder(tokenizer: Any, data: Any, kind: str, label_to_id: dict[str, int] | None, max_length: int) -> Any:
        padding = "max_length" if data.pad_to_max_length else False
        delimiter = data.text_column_delimiter if data.text_column_delimiter is not None else " "

        def encode_labels(values: list[Any]) -> list[Any]:
            if label_to_id is None:  # regression: the values themselves
                return [float(v) for v in values]
            if kind == MULTI:
                rows = []
                for row in values:
                    hot = [0.0] * len(label_to_id)  # BCE loss wants float targets
                    for label in row:
                        hot[label_to_id[str(label)]] = 1.0
                    rows.append(hot)
                return rows
            return [-1 if str(v) == "-1" else label_to_id[str(v)] for v in values]

        def encode(ds: Any, split: str) -> Any:
            if ds is None:
                return None
            columns = list(ds.column_names)
            texts = text_columns(data, columns)
            missing = [c for c in texts if c not in columns]
            if missing:
                raise DataError(f"--text_column_names {missing[0]!r} is not a column of the {split} split",
                                hint=f"columns: {', '.join(columns)}")
            names = getattr(ds.features.get("label"), "names", None)

            def tokenize(batch: Mapping[str, list[Any]]) -> dict[str, Any]:
                joined = [delimiter.join("" if v is None else str(v) for v in parts)
                          for parts in zip(*(batch[c] for c in texts))]
                out = tokenizer(joined, padding=padding, max_length=max_length, truncation=True)
                if "label" in batch:
                    values = batch["label"]
                    if names:  # ClassLabel ids -> names -> this run's ids
                        values = [names[v] if v >= 0 else -1 for v in values]
                    # a new column: datasets would keep the old type for an updated "label"
                    out["labels"] = encode_labels(values)
                return out

            return ds.map(
                tokenize,
                batched=True,
                num_proc=data.preprocessing_num_workers,
                remove_columns=columns,
                load_from_cache_file=not data.overwrite_cache,
                desc=f"Tokenizing {split}",
            )

        return encode

    @staticmethod
    def _metrics_fn(names: list[str], kind: str) -> Any:
        import evaluate
        import numpy as np

        metrics = []
        for name in names:
            try:
                metrics.append((name, evaluate.load(metric_source(name), config_name="multilabel" if kind == MULTI else None)))
            except Exception as exc:  # unknown Hub name, offline, broken module
                raise ConfigError(f"cannot load metric {name!r}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
                                  hint=f"shipped metrics: {', '.join(SHIPPED_METRICS)}") from None

        def compute(p: Any) -> dict[str, float]:
            preds = p.predictions[0] if isinstance(p.predictions, tuple) else p.predictions
            labels = p.label_ids
            if kind == REGRESSION:
                preds = np.asarray(preds).reshape(-1)
            elif kind == MULTI:
                preds, labels = (np.asarray(preds) > 0).astype(int), np.asarray(labels).astype(int)
            else:
                preds = np.argmax(preds, axis=1)
            result: dict[str, float] = {}
            for name, metric in metrics:
                extra = {"average": "micro" if kind == MULTI else "macro"} if name in AVERAGED_METRICS else {}
                for key, value in metric.compute(predictions=preds, references=labels, **extra).items():
                    if isinstance(value, (int, float, np.floating, np.integer)):
                        result[key] = float(value)
            return with_combined(result)

        return compute

    @staticmethod
    def _writer(kind: str, id2label: Mapping[int, str]) -> Any:
        def write(output: Any, output_dir: Path) -> None:
            import numpy as np

            preds = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
            if kind == REGRESSION:
                preds = np.asarray(preds).reshape(-1)
            elif kind == MULTI:
                preds = (np.asarray(preds) > 0).astype(int)
            else:
                preds = np.argmax(preds, axis=1)
            lines = prediction_lines(preds, kind, id2label)
            (output_dir / "predict_results.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")

        return write

    def _build_builtin(self, out: Path) -> None:
        """A tiny BERT encoder (no head: each run adds one for its labels) and a [CLS] ... [SEP]
        tokenizer trained on the shipped sentences."""
        import csv

        from transformers import BertConfig, BertModel

        with open(self.data_dir / "train.csv", encoding="utf-8", newline="") as fh:
            texts = [row["sentence"] for row in csv.DictReader(fh)]
        roles = {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]",
                 "mask_token": "[MASK]"}
        tokenizer = tiny_tokenizer(texts, 800, roles, max_length=128, bos="[CLS]", eos="[SEP]", unk="[UNK]")
        config = BertConfig(vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=128, max_position_embeddings=128, hidden_dropout_prob=0.1,
                            attention_probs_dropout_prob=0.0, pad_token_id=tokenizer.pad_token_id)
        save_tiny(out, BertModel, config, tokenizer)


def _offline() -> bool:
    import os

    return any(os.environ.get(k, "").strip().lower() in ("1", "true", "yes")
               for k in ("HF_HUB_OFFLINE", "HF_EVALUATE_OFFLINE", "TRANSFORMERS_OFFLINE"))


@hookimpl
def tx_register_tasks(registry: Any) -> None:
    registry.add(ClassificationTask())
