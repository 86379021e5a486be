"""Contender (a): a plain Hugging Face fine-tuning script for summarization.

It does what transformers' examples/pytorch/summarization/run_summarization.py does, with the
HF defaults and nothing tuned: HfArgumentParser over model/data/Seq2SeqTrainingArguments,
`load_dataset("json")` of the three files, tokenization with `Dataset.map` (cached),
DataCollatorForSeq2Seq with dynamic padding, Seq2SeqTrainer, train, save, evaluate and predict
with generation, ROUGE (the offline metric module tx ships), generated_predictions.txt, model
card. Written for this benchmark; it accepts the same flags as `tx run summarization` for the
fields it has. The only addition is the timing callback of marks.py (also given to tx).

    python bench/plain_hf.py --model_name_or_path DIR --train_file ... --output_dir OUT ...
"""

from __future__ import annotations

import logging
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import marks  # noqa: E402

ROUGE_MODULE = Path(__file__).resolve().parents[1] / "plugins" / "summarization" / "metrics" / "rouge"
logger = logging.getLogger(__name__)


@dataclass
class ModelArguments:
    model_name_or_path: str = field(metadata={"help": "Model folder or Hub id."})
    use_fast_tokenizer: bool = field(default=True)


@dataclass
class DataArguments:
    train_file: str | None = None
    validation_file: str | None = None
    test_file: str | None = None
    text_column: str | None = None
    summary_column: str | None = None
    source_prefix: str = ""
    max_source_length: int = 1024
    max_target_length: int = 128
    val_max_target_length: int | None = None
    pad_to_max_length: bool = False
    ignore_pad_token_for_loss: bool = True
    num_beams: int | None = None
    preprocessing_num_workers: int | None = None
    overwrite_cache: bool = False
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    max_predict_samples: int | None = None


def sentences_per_line(text: str) -> str:
    """rougeLsum wants one sentence per line (the HF script uses nltk's punkt, a download)."""
    return "\n".join(s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s)


def main() -> int:
    import evaluate
    import numpy as np
    import transformers
    from datasets import load_dataset
    from transformers import (AutoConfig, AutoModelForSeq2SeqLM, AutoTokenizer, DataCollatorForSeq2Seq,
                              HfArgumentParser, Seq2SeqTrainer, Seq2SeqTrainingArguments, set_seed)
    from transformers.trainer_utils import get_last_checkpoint

    parser = HfArgumentParser((ModelArguments, DataArguments, Seq2SeqTrainingArguments))
    model_args, data_args, training_args = parser.parse_args_into_dataclasses()

    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
                        datefmt="%m/%d/%Y %H:%M:%S", handlers=[logging.StreamHandler(sys.stdout)])
    if training_args.should_log:
        transformers.utils.logging.set_verbosity_info()
    level = training_args.get_process_log_level()
    logger.setLevel(level)
    transformers.utils.logging.set_verbosity(level)
    logger.info("Training/evaluation parameters %s", training_args)

    last_checkpoint = None
    if os.path.isdir(training_args.output_dir) and training_args.do_train:
        last_checkpoint = get_last_checkpoint(training_args.output_dir)
    set_seed(training_args.seed)

    files = {split: path for split, path in (("train", data_args.train_file), ("validation", data_args.validation_file),
                                              ("test", data_args.test_file)) if path}
    extension = Path(next(iter(files.values()))).suffix.lstrip(".")
    raw = load_dataset("json" if extension == "jsonl" else extension, data_files=files)

    config = AutoConfig.from_pretrained(model_args.model_name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(model_args.model_name_or_path, use_fast=model_args.use_fast_tokenizer)
    model = AutoModelForSeq2SeqLM.from_pretrained(model_args.model_name_or_path, config=config)
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer))
    if model.config.decoder_start_token_id is None:
        raise ValueError("the model config needs a decoder_start_token_id")

    if training_args.do_train:
        column_names = raw["train"].column_names
    elif training_args.do_eval:
        column_names = raw["validation"].column_names
    else:
        column_names = raw["test"].column_names
    text_column = data_args.text_column or column_names[0]
    summary_column = data_args.summary_column or column_names[1]
    padding = "max_length" if data_args.pad_to_max_length else False
    if data_args.val_max_target_length is None:
        data_args.val_max_target_length = data_args.max_target_length

    def tokenize_with(max_target: int):
        def tokenize(batch):
            keep = [i for i in range(len(batch[text_column])) if batch[text_column][i] and batch[summary_column][i]]
            inputs = [data_args.source_prefix + batch[text_column][i] for i in keep]
            targets = [batch[summary_column][i] for i in keep]
            enc = tokenizer(inputs, max_length=data_args.max_source_length, padding=padding, truncation=True)
            labels = tokenizer(text_target=targets, max_length=max_target, padding=padding, truncation=True)
            if padding == "max_length" and data_args.ignore_pad_token_for_loss:
                labels["input_ids"] = [[(t if t != tokenizer.pad_token_id else -100) for t in seq]
                                       for seq in labels["input_ids"]]
            enc["labels"] = labels["input_ids"]
            return enc
        return tokenize

    def prepare(split: str, limit: int | None, max_target: int):
        ds = raw[split]
        if limit is not None:
            ds = ds.select(range(min(len(ds), limit)))
        with training_args.main_process_first(desc=f"{split} dataset map pre-processing"):
            return ds.map(tokenize_with(max_target), batched=True, num_proc=data_args.preprocessing_num_workers,
                          remove_columns=column_names, load_from_cache_file=not data_args.overwrite_cache,
                          desc=f"Running tokenizer on {split} dataset")

    train_dataset = prepare("train", data_args.max_train_samples, data_args.max_target_length) \
        if training_args.do_train else None
    eval_dataset = prepare("validation", data_args.max_eval_samples, data_args.val_max_target_length) \
        if training_args.do_eval else None
    predict_dataset = prepare("test", data_args.max_predict_samples, data_args.val_max_target_length) \
        if training_args.do_predict else None

    label_pad = -100 if data_args.ignore_pad_token_for_loss else tokenizer.pad_token_id
    collator = DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=label_pad,
                                      pad_to_multiple_of=8 if training_args.fp16 else None)
    metric = evaluate.load(str(ROUGE_MODULE))

    def compute_metrics(eval_preds):
        preds, labels = eval_preds
        if isinstance(preds, tuple):
            preds = preds[0]
        preds = np.where(preds != -100, preds, tokenizer.pad_token_id)
        labels = np.where(labels != -100, labels, tokenizer.pad_token_id)
        decoded_preds = [sentences_per_line(p) for p in tokenizer.batch_decode(preds, skip_special_tokens=True)]
        decoded_labels = [sentences_per_line(x) for x in tokenizer.batch_decode(labels, skip_special_tokens=True)]
        result = metric.compute(predictions=decoded_preds, references=decoded_labels, use_stemmer=True)
        result = {k: round(v * 100, 4) for k, v in result.items()}
        result["gen_len"] = float(np.mean([np.count_nonzero(p != tokenizer.pad_token_id) for p in preds]))
        return result

    training_args.generation_max_length = training_args.generation_max_length or data_args.val_max_target_length
    training_args.generation_num_beams = data_args.num_beams or training_args.generation_num_beams
    trainer = Seq2SeqTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        data_collator=collator,
        compute_metrics=compute_metrics if training_args.predict_with_generate else None,
        callbacks=[marks.callback()],
    )

    if training_args.do_train:
        result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint or last_checkpoint)
        trainer.save_model()
        metrics = result.metrics
        metrics["train_samples"] = len(train_dataset)
        trainer.log_metrics("train", metrics)
        trainer.save_metrics("train", metrics)
        trainer.save_state()

    max_length = training_args.generation_max_length
    num_beams = training_args.generation_num_beams
    if training_args.do_eval:
        metrics = trainer.evaluate(max_length=max_length, num_beams=num_beams, metric_key_prefix="eval")
        metrics["eval_samples"] = len(eval_dataset)
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)

    if training_args.do_predict:
        output = trainer.predict(predict_dataset, metric_key_prefix="predict", max_length=max_length,
                                 num_beams=num_beams)
        metrics = output.metrics
        metrics["predict_samples"] = len(predict_dataset)
        trainer.log_metrics("predict", metrics)
        trainer.save_metrics("predict", metrics)
        if trainer.is_world_process_zero() and training_args.predict_with_generate:
            preds = np.where(output.predictions != -100, output.predictions, tokenizer.pad_token_id)
            texts = tokenizer.batch_decode(preds, skip_special_tokens=True, clean_up_tokenization_spaces=True)
            Path(training_args.output_dir, "generated_predictions.txt").write_text(
                "\n".join(t.strip() for t in texts) + "\n", encoding="utf-8")

    card = {"finetuned_from": model_args.model_name_or_path, "tasks": "summarization"}
    if trainer.is_world_process_zero():
        trainer.create_model_card(**card)
    return 0


if __name__ == "__main__":
    sys.exit(main())
