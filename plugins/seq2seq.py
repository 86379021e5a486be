"""Shared base of the sequence-to-sequence tasks (summarization, translation).

Everything both tasks do the same way lives here once: model/tokenizer loading (Hub name, local
path or a tiny built-in model), tokenization with prefixes and max lengths, label padding,
generation settings, decoding predictions for metrics, and writing generated_predictions.txt.
A subclass says which texts are the source and the target and which metric scores them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping

from tx.core.builtin_models import PREFIX, cached_build, is_builtin, train_tokenizer
from tx.core.errors import ConfigError, DataError
from tx.core.task import RunArgs, RunContext, Task, TaskParts

#: keys that mean "the user chose their own data or model": the built-in default run then stays out
USER_CHOICE_KEYS = ("model_name_or_path", "dataset_name", "train_file", "validation_file", "test_file")


@dataclass
class Seq2SeqModelArguments:
    """Which model/config/tokenizer to fine-tune (the HF example scripts' ModelArguments)."""

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
    resize_position_embeddings: bool | None = field(
        default=None,
        metadata={"help": "Resize the position embeddings when max_source_length exceeds them "
                  "(default: resize with a warning)."},
    )


@dataclass
class Seq2SeqDataArguments:
    """Data options common to the seq2seq tasks (the HF scripts' DataTrainingArguments)."""

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
    max_source_length: int | None = field(
        default=1024, metadata={"help": "Maximum input length in tokens after tokenization; longer inputs are truncated."}
    )
    max_target_length: int | None = field(
        default=128, metadata={"help": "Maximum target length in tokens for training; longer targets are truncated."}
    )
    val_max_target_length: int | None = field(
        default=None,
        metadata={"help": "Maximum target length for evaluation, also the max_length of generate() "
                  "during evaluate/predict (default: max_target_length)."},
    )
    pad_to_max_length: bool = field(
        default=False,
        metadata={"help": "Pad every sample to the maximum length instead of padding each batch dynamically."},
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N training examples."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use only the first N evaluation examples."})
    max_predict_samples: int | None = field(default=None, metadata={"help": "Use only the first N prediction examples."})
    num_beams: int | None = field(
        default=1, metadata={"help": "Beams for generate() during evaluate and predict."}
    )
    ignore_pad_token_for_loss: bool = field(
        default=True, metadata={"help": "Ignore padded label tokens in the loss."}
    )
    source_prefix: str | None = field(
        default=None, metadata={"help": "Text put before every source text (e.g. 'summarize: ' for T5)."}
    )
    forced_bos_token: str | None = field(
        default=None,
        metadata={"help": "Token forced as the first generated token after decoder_start_token_id "
                  "(multilingual models such as mBART: the target language code)."},
    )


def check_lengths(data: Any) -> None:
    for name in ("max_source_length", "max_target_length", "val_max_target_length"):
        value = getattr(data, name, None)
        if value is not None and value <= 0:
            raise ConfigError(f"--{name} must be a positive number of tokens, got {value}")
    for name in ("max_train_samples", "max_eval_samples", "max_predict_samples", "preprocessing_num_workers"):
        value = getattr(data, name, None)
        if value is not None and value <= 0:
            raise ConfigError(f"--{name} must be positive, got {value}")
    if getattr(data, "num_beams", None) is not None and data.num_beams < 1:
        raise ConfigError(f"--num_beams must be at least 1, got {data.num_beams}")


class Seq2SeqTask(Task):
    """Base for tasks that map a source text to a target text with generation."""

    training_arguments = "seq2seq"
    #: folder with the shipped train/validation/test .jsonl of the built-in default
    data_dir: ClassVar[Path]
    #: evaluate metric module folder (loaded by path, offline)
    metric_dir: ClassVar[Path]
    #: key of the tiny built-in model in the tx cache
    builtin_model: ClassVar[str]

    # -- what subclasses provide -------------------------------------------------------------
    def source_target(self, batch: Mapping[str, list[Any]], data: Any, columns: list[str]) -> tuple[list[str], list[str]]:
        """Source and target texts of a batch of raw rows."""
        raise NotImplementedError

    def check_columns(self, columns: list[str], data: Any, where: str) -> None:
        """Raise DataError when the rows lack what source_target needs."""

    def postprocess(self, preds: list[str], labels: list[str]) -> tuple[Any, Any]:
        return [p.strip() for p in preds], [label.strip() for label in labels]

    def score(self, metric: Any, preds: Any, labels: Any) -> dict[str, float]:
        return dict(metric.compute(predictions=preds, references=labels))

    def configure_tokenizer(self, tokenizer: Any, model: Any, data: Any) -> None:
        """Language codes etc. for multilingual tokenizers (translation overrides)."""

    def builtin_texts(self) -> list[str]:
        """Texts the tiny built-in tokenizer is trained on."""
        raise NotImplementedError

    def builtin_defaults(self) -> dict[str, Any]:
        """Training settings of the built-in default run."""
        return {}

    # -- Task interface ------------------------------------------------------------------------
    def default_args(self, given: set[str]) -> dict[str, Any]:
        if given & set(USER_CHOICE_KEYS):
            return {}
        out = {
            "model_name_or_path": PREFIX + self.builtin_model,
            "train_file": str(self.data_dir / "train.jsonl"),
            "validation_file": str(self.data_dir / "validation.jsonl"),
            "test_file": str(self.data_dir / "test.jsonl"),
            "output_dir": f"tx-output/{self.name}",
            "do_train": True,
            "do_eval": True,
            "do_predict": True,
            "predict_with_generate": True,
        }
        out.update(self.builtin_defaults())
        return out

    def validate(self, args: RunArgs) -> None:
        from tx.core.data import check_file, data_files, peek_columns

        data, training = args.data, args.training
        check_lengths(data)
        if not data.dataset_name and not data_files(data):
            raise ConfigError(
                "no data: give --dataset_name or at least one of --train_file/--validation_file/--test_file"
            )
        for split, path in data_files(data).items():
            check_file(path, f"--{split}_file")
            self.check_columns(peek_columns(path), data, path)
        if training.do_train and not (data.dataset_name or data.train_file):
            raise ConfigError("--do_train needs training data", hint="add --train_file or --dataset_name")
        if training.do_eval and not (data.dataset_name or data.validation_file):
            raise ConfigError("--do_eval needs evaluation data", hint="add --validation_file or --dataset_name")
        if training.do_predict and not (data.dataset_name or data.test_file):
            raise ConfigError("--do_predict needs prediction data", hint="add --test_file or --dataset_name")
        name = args.model.model_name_or_path
        if is_builtin(name) and name != PREFIX + self.builtin_model:
            raise ConfigError(
                f"unknown built-in model {name!r}", hint=f"the {self.name} task builds {PREFIX}{self.builtin_model}"
            )
        check_local_model(name)

    def build(self, ctx: RunContext) -> TaskParts:
        from tx.core.data import load_raw_datasets

        margs, data, training = ctx.args.model, ctx.args.data, ctx.args.training
        if data.val_max_target_length is None:
            data.val_max_target_length = data.max_target_length
        model, tokenizer = self.load_model(margs, data)
        self.configure_tokenizer(tokenizer, model, data)
        raw = load_raw_datasets(data, margs)
        for split in raw:
            self.check_columns(list(raw[split].column_names), data, f"the {split} split")

        train = self._split(raw, "train", data.max_train_samples, training.do_train, ctx, tokenizer, data, data.max_target_length)
        eval_ = self._split(raw, "validation", data.max_eval_samples, training.do_eval, ctx, tokenizer, data, data.val_max_target_length)
        predict = self._split(raw, "test", data.max_predict_samples, training.do_predict, ctx, tokenizer, data, data.val_max_target_length)

        from transformers import DataCollatorForSeq2Seq

        label_pad = -100 if data.ignore_pad_token_for_loss else tokenizer.pad_token_id
        collator = DataCollatorForSeq2Seq(
            tokenizer,
            model=model,
            label_pad_token_id=label_pad,
            pad_to_multiple_of=8 if training.fp16 else None,
        )
        gen = {
            "max_length": training.generation_max_length or data.val_max_target_length,
            "num_beams": data.num_beams if data.num_beams is not None else training.generation_num_beams,
        }
        metric = self._load_metric() if training.predict_with_generate else None
        compute = self._metrics_fn(tokenizer, metric) if metric is not None else None
        return TaskParts(
            model=model,
            tokenizer=tokenizer,
            data_collator=collator,
            train_dataset=train,
            eval_dataset=eval_,
            predict_dataset=predict,
            compute_metrics=compute,
            write_predictions=self._writer(tokenizer) if training.predict_with_generate else None,
            generation_kwargs=gen,
            card={"tasks": self.name, "dataset": data.dataset_name or "local files",
                  "dataset_args": data.dataset_config_name},
        )

    # -- the shared mechanics ------------------------------------------------------------------
    def load_model(self, margs: Any, data: Any) -> tuple[Any, Any]:
        from transformers import AutoConfig, AutoModelForSeq2SeqLM, AutoTokenizer

        name = margs.model_name_or_path
        if is_builtin(name):
            name = str(cached_build(self.builtin_model, self._build_builtin))
        common = {"cache_dir": margs.cache_dir, "revision": margs.model_revision,
                  "token": margs.token, "trust_remote_code": margs.trust_remote_code}
        try:
            config = AutoConfig.from_pretrained(margs.config_name or name, **common)
            tokenizer = AutoTokenizer.from_pretrained(
                margs.tokenizer_name or name, use_fast=margs.use_fast_tokenizer, **common
            )
            model = AutoModelForSeq2SeqLM.from_pretrained(name, config=config, **common)
        except OSError as exc:
            raise ConfigError(
                f"cannot load model {margs.model_name_or_path!r}: {str(exc).splitlines()[0]}",
                hint="check the name or path (offline? pass a local model folder)",
            ) from None
        vocab = model.get_input_embeddings().weight.shape[0]
        if len(tokenizer) > vocab:
            model.resize_token_embeddings(len(tokenizer))
        if model.config.decoder_start_token_id is None:
            raise ConfigError(
                f"model {margs.model_name_or_path!r} has no decoder_start_token_id",
                hint="use a seq2seq model whose config sets it",
            )
        self._fit_positions(model, margs, data)
        return model, tokenizer

    @staticmethod
    def _fit_positions(model: Any, margs: Any, data: Any) -> None:
        limit = getattr(model.config, "max_position_embeddings", None)
        if limit is None or data.max_source_length is None or data.max_source_length <= limit:
            return
        if margs.resize_position_embeddings is False:
            raise ConfigError(
                f"--max_source_length {data.max_source_length} exceeds the model's {limit} position embeddings",
                hint=f"lower --max_source_length to {limit} or pass --resize_position_embeddings",
            )
        if hasattr(model, "resize_position_embeddings"):
            model.resize_position_embeddings(data.max_source_length)
        else:
            data.max_source_length = limit

    def _build_builtin(self, out: Path) -> None:
        from transformers import T5Config, T5ForConditionalGeneration

        tokenizer = train_tokenizer(self.builtin_texts(), vocab_size=1200, special_tokens=["<pad>", "</s>", "<unk>"])
        tokenizer.pad_token, tokenizer.eos_token, tokenizer.unk_token = "<pad>", "</s>", "<unk>"
        tokenizer.model_max_length = 512
        config = T5Config(
            vocab_size=len(tokenizer),
            d_model=128,
            d_ff=512,
            d_kv=32,
            num_layers=2,
            num_decoder_layers=2,
            num_heads=4,
            dropout_rate=0.0,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            decoder_start_token_id=tokenizer.pad_token_id,
        )
        import torch

        torch.manual_seed(0)
        T5ForConditionalGeneration(config).save_pretrained(out)
        tokenizer.save_pretrained(out)

    def _split(self, raw: Any, split: str, limit: int | None, wanted: bool, ctx: RunContext,
               tokenizer: Any, data: Any, max_target: int | None) -> Any:
        if not wanted:
            return None
        if split not in raw:
            raise DataError(f"the dataset has no {split!r} split", hint=f"available splits: {', '.join(raw)}")
        ds = raw[split]
        if limit is not None:
            ds = ds.select(range(min(len(ds), limit)))
        if len(ds) == 0:
            raise DataError(f"the {split} split is empty", hint="check the data file")
        columns = list(ds.column_names)
        prefix = data.source_prefix or ""
        padding = "max_length" if data.pad_to_max_length else False

        def tokenize(batch: Mapping[str, list[Any]]) -> dict[str, Any]:
            sources, targets = self.source_target(batch, data, columns)
            enc = tokenizer([prefix + s for s in sources], max_length=data.max_source_length,
                            padding=padding, truncation=True)
            labels = tokenizer(text_target=targets, max_length=max_target, padding=padding, truncation=True)
            ids = labels["input_ids"]
            if padding == "max_length" and data.ignore_pad_token_for_loss:
                pad = tokenizer.pad_token_id
                ids = [[(t if t != pad else -100) for t in seq] for seq in ids]
            enc["labels"] = ids
            return enc

        with ctx.args.training.main_process_first(desc=f"{split} tokenization"):
            return ds.map(
                tokenize,
                batched=True,
                num_proc=data.preprocessing_num_workers,
                remove_columns=columns,
                load_from_cache_file=not data.overwrite_cache,
                desc=f"Tokenizing {split}",
            )

    def _load_metric(self) -> Any:
        import evaluate

        return evaluate.load(str(self.metric_dir))

    def _metrics_fn(self, tokenizer: Any, metric: Any) -> Any:
        import numpy as np

        def compute(eval_preds: Any) -> dict[str, float]:
            preds, labels = eval_preds.predictions, eval_preds.label_ids
            if isinstance(preds, tuple):
                preds = preds[0]
            pad = tokenizer.pad_token_id
            preds = np.where(preds != -100, preds, pad)
            labels = np.where(labels != -100, labels, pad)
            decoded_preds = tokenizer.batch_decode(preds, skip_special_tokens=True)
            decoded_labels = tokenizer.batch_decode(labels, skip_special_tokens=True)
            p, lab = self.postprocess(decoded_preds, decoded_labels)
            result = self.score(metric, p, lab)
            result["gen_len"] = float(np.mean([np.count_nonzero(row != pad) for row in preds]))
            return {k: round(float(v), 4) for k, v in result.items()}

        return compute

    @staticmethod
    def _writer(tokenizer: Any) -> Any:
        def write(output: Any, output_dir: Path) -> None:
            import numpy as np

            preds = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
            preds = np.where(preds != -100, preds, tokenizer.pad_token_id)
            texts = tokenizer.batch_decode(preds, skip_special_tokens=True, clean_up_tokenization_spaces=True)
            lines = [" ".join(t.strip().split()) for t in texts]
            (output_dir / "generated_predictions.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")

        return write


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
