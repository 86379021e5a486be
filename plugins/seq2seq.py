"""Shared base of the sequence-to-sequence tasks (summarization, translation).

Everything both tasks do the same way lives here once: model/tokenizer loading (Hub name, local
path or a tiny built-in model), tokenization with prefixes and max lengths, label padding,
generation settings, decoding predictions for metrics, and writing generated_predictions.txt.
A subclass says which texts are the source and the target and which metric scores them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterator, Mapping

from tx.core.errors import ConfigError
from tx.core.task import RunArgs, RunContext, Task, TaskParts
from tx.plugins.common import (
    USER_CHOICE_KEYS,
    DataArguments,
    ModelArguments,
    builtin_run,
    check_data_sources,
    check_local_model,
    check_model_name,
    check_tokenizer_source,
    hub_kwargs,
    loading_model,
    model_card,
    model_path,
    pick_split,
    save_tiny,
    tiny_tokenizer,
)

__all__ = ["USER_CHOICE_KEYS", "Seq2SeqDataArguments", "Seq2SeqModelArguments", "Seq2SeqTask", "check_local_model"]


@dataclass
class Seq2SeqModelArguments(ModelArguments):
    """Which model/config/tokenizer to fine-tune (the HF seq2seq scripts' ModelArguments)."""

    resize_position_embeddings: bool = field(  # type: ignore[assignment]  # bool so the bare flag works (HF)
        default=None,
        metadata={"help": "Resize the position embeddings when max_source_length exceeds them "
                  "(default: resize with a warning)."},
    )


@dataclass
class Seq2SeqDataArguments(DataArguments):
    """Data options common to the seq2seq tasks (the HF scripts' DataTrainingArguments)."""

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
                  "(multilingual models such as mBART-50/M2M100: the target language code)."},
    )


def check_lengths(data: Any) -> None:
    for name in ("max_source_length", "max_target_length", "val_max_target_length"):
        value = getattr(data, name, None)
        if value is not None and value <= 0:
            raise ConfigError(f"--{name} must be a positive number of tokens, got {value}")
    if getattr(data, "num_beams", None) is not None and data.num_beams < 1:
        raise ConfigError(f"--num_beams must be at least 1, got {data.num_beams}")


# -- multilingual tokenizers (mBART, mBART-50, M2M100, NLLB) --------------------------------------
def is_multilingual(tokenizer: Any) -> bool:
    """Tokenizers that carry a source and a target language code and put them into the token
    sequences (the HF scripts list mBART/mBART-50/M2M100 classes; they all have both attributes)."""
    return hasattr(tokenizer, "src_lang") and hasattr(tokenizer, "tgt_lang")


def language_code_id(tokenizer: Any, code: str, flag: str) -> int:
    """Token id of a language code (``lang_code_to_id`` when the tokenizer has one, else the
    token itself); an unknown code is a ConfigError listing the known ones."""
    table = getattr(tokenizer, "lang_code_to_id", None)
    if isinstance(table, Mapping) and code in table:
        return int(table[code])
    token_id = tokenizer.convert_tokens_to_ids(code)
    if isinstance(token_id, int) and token_id != tokenizer.unk_token_id:
        return token_id
    known = sorted(table) if isinstance(table, Mapping) else []
    shown = ", ".join(known[:12]) + (" ..." if len(known) > 12 else "")
    raise ConfigError(
        f"{flag} {code!r} is not a language code of the {type(tokenizer).__name__} tokenizer",
        hint=f"codes it knows: {shown}" if known else "pass a token of its vocabulary",
    )


def set_languages(tokenizer: Any, model: Any, codes: tuple[str | None, str | None],
                  forced_bos: str | None, flags: tuple[str, str]) -> None:
    """What the HF scripts do for multilingual models: set ``src_lang``/``tgt_lang`` on the
    tokenizer (so sources end in the source code and targets in the target code), start decoding
    with the target code when the config has no decoder_start_token_id, and force
    ``--forced_bos_token`` as the first generated token (cleared when not given)."""
    src, tgt = codes
    forced_id = language_code_id(tokenizer, forced_bos, "--forced_bos_token") if forced_bos else None
    if is_multilingual(tokenizer):
        if not src or not tgt:
            raise ConfigError(
                f"{type(tokenizer).__name__} is a multilingual tokenizer and needs language codes",
                hint=f"pass {flags[0]}" + (f" and {flags[1]}" if flags[1] != flags[0] else ""),
            )
        language_code_id(tokenizer, src, flags[0])
        target_id = language_code_id(tokenizer, tgt, flags[1])
        tokenizer.src_lang = src
        tokenizer.tgt_lang = tgt
        if model.config.decoder_start_token_id is None:
            model.config.decoder_start_token_id = target_id
            model.generation_config.decoder_start_token_id = target_id
        model.generation_config.forced_bos_token_id = forced_id
    elif forced_id is not None:
        model.generation_config.forced_bos_token_id = forced_id


class Seq2SeqTask(Task):
    """Base for tasks that map a source text to a target text with generation."""

    training_arguments = "seq2seq"
    #: folder with the shipped train/validation/test .jsonl of the built-in default
    data_dir: ClassVar[Path]
    #: evaluate metric module folder (loaded by path, offline)
    metric_dir: ClassVar[Path]
    #: key of the tiny built-in model in the tx cache
    builtin_model: ClassVar[str]
    #: the flags that set the (source, target) language codes, for error messages
    language_flags: ClassVar[tuple[str, str]] = ("--lang", "--lang")

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

    def language_codes(self, data: Any) -> tuple[str | None, str | None]:
        """(source, target) language codes for multilingual tokenizers and the model card;
        one ``--lang`` for both by default (summarization), translation has two."""
        lang = getattr(data, "lang", None)
        return lang, lang

    def check_split(self, ds: Any, data: Any, where: str) -> None:
        """Raise DataError when a loaded split cannot be used (default: its columns)."""
        self.check_columns(list(ds.column_names), data, where)

    def builtin_texts(self) -> list[str]:
        """Texts the tiny built-in tokenizer is trained on (from :meth:`shipped_rows`)."""
        raise NotImplementedError

    def shipped_rows(self) -> Iterator[dict[str, Any]]:
        """The rows of the shipped training data (data_dir/train.jsonl)."""
        with open(self.data_dir / "train.jsonl", encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    yield json.loads(line)

    def builtin_defaults(self) -> dict[str, Any]:
        """Training settings of the built-in default run."""
        return {}

    # -- Task interface ------------------------------------------------------------------------
    def default_args(self, given: set[str]) -> dict[str, Any]:
        out = builtin_run(self.name, self.builtin_model, self.data_dir, "jsonl", given)
        if out:
            out["predict_with_generate"] = True
            out.update(self.builtin_defaults())
        if not given & {"train_sampling_strategy", "group_by_length"}:
            # Training batches of similar lengths, in random order (tx.core.lengths): on texts of mixed
            # lengths about half the tokens of random batches, and no lower ROUGE/BLEU over 3-5 seeds
            # (README "Performance"). --train_sampling_strategy random gives transformers' default back.
            out["train_sampling_strategy"] = "group_by_length"
        return out

    def validate(self, args: RunArgs) -> None:
        check_lengths(args.data)
        check_data_sources(args, lambda columns, path: self.check_columns(columns, args.data, path))
        check_model_name(args.model.model_name_or_path, self.builtin_model, self.name)
        check_tokenizer_source(args)

    def build(self, ctx: RunContext) -> TaskParts:
        from tx.core.data import load_raw_datasets

        margs, data, training = ctx.args.model, ctx.args.data, ctx.args.training
        if data.val_max_target_length is None:
            data.val_max_target_length = data.max_target_length
        model, tokenizer = self.load_model(margs, data)
        raw = load_raw_datasets(data, margs)
        for split in raw:
            self.check_split(raw[split], data, f"the {split} split")

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
        # Set on the arguments (not only passed to evaluate()) so evaluations during training
        # generate with the same settings as the final one.
        training.generation_max_length = training.generation_max_length or data.val_max_target_length
        if data.num_beams is not None and training.generation_num_beams is None:
            training.generation_num_beams = data.num_beams
        gen = {"max_length": training.generation_max_length, "num_beams": training.generation_num_beams or 1}
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
            card=model_card(data, self.name,
                            language=list(dict.fromkeys(c for c in self.language_codes(data) if c))),
        )

    # -- the shared mechanics ------------------------------------------------------------------
    def load_model(self, margs: Any, data: Any) -> tuple[Any, Any]:
        from transformers import AutoConfig, AutoModelForSeq2SeqLM, AutoTokenizer

        name = model_path(margs, self.builtin_model, self._build_builtin)
        common = hub_kwargs(margs)
        with loading_model(margs.model_name_or_path):
            config = AutoConfig.from_pretrained(margs.config_name or name, **common)
            tokenizer = AutoTokenizer.from_pretrained(
                margs.tokenizer_name or name, use_fast=margs.use_fast_tokenizer, **common
            )
            model = AutoModelForSeq2SeqLM.from_pretrained(name, config=config, **common)
        vocab = model.get_input_embeddings().weight.shape[0]
        if len(tokenizer) > vocab:
            model.resize_token_embeddings(len(tokenizer))
        set_languages(tokenizer, model, self.language_codes(data), data.forced_bos_token, self.language_flags)
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
        try:  # every PreTrainedModel has the method; most raise NotImplementedError
            model.resize_position_embeddings(data.max_source_length)
        except NotImplementedError:
            data.max_source_length = limit

    def _build_builtin(self, out: Path) -> None:
        from transformers import T5Config, T5ForConditionalGeneration

        tokenizer = tiny_tokenizer(self.builtin_texts(), 1200, {"pad_token": "<pad>", "eos_token": "</s>",
                                                                "unk_token": "<unk>"}, max_length=512)
        config = T5Config(vocab_size=len(tokenizer), d_model=128, d_ff=512, d_kv=32, num_layers=2, num_decoder_layers=2,
                          num_heads=4, dropout_rate=0.0, pad_token_id=tokenizer.pad_token_id,
                          eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=tokenizer.pad_token_id)
        save_tiny(out, T5ForConditionalGeneration, config, tokenizer)

    def _split(self, raw: Any, split: str, limit: int | None, wanted: bool, ctx: RunContext,
               tokenizer: Any, data: Any, max_target: int | None) -> Any:
        if not wanted:
            return None
        ds = pick_split(raw, split, limit)
        columns = list(ds.column_names)
        if split != "test":  # rows with an empty source or target teach nothing: skipped, counted
            ds = self._drop_empty_rows(ds, data, columns, split, ctx)
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

    def _drop_empty_rows(self, ds: Any, data: Any, columns: list[str], split: str, ctx: RunContext) -> Any:
        """Train/validation rows whose source or target text is empty or blank are skipped with a
        one-line count (test rows are kept so predictions stay aligned with the input lines)."""
        def keep(batch: Mapping[str, list[Any]]) -> list[bool]:
            sources, targets = self.source_target(batch, data, columns)
            return [bool(s and s.strip()) and bool(t and t.strip()) for s, t in zip(sources, targets)]

        with ctx.args.training.main_process_first(desc=f"{split} empty rows"):
            kept = ds.filter(keep, batched=True, load_from_cache_file=not data.overwrite_cache,
                             desc=f"Checking {split} texts")
        dropped = len(ds) - len(kept)
        if dropped == len(ds):
            from tx.core.errors import DataError

            raise DataError(f"every row of the {split} split has an empty source or target text",
                            hint="check the data and the column flags")
        if dropped and ctx.is_main_process:
            print(f"tx: skipped {dropped} of {len(ds)} rows of the {split} split with an empty source or target text",
                  flush=True)
        return kept

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

