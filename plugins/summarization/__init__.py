"""The summarization task: document -> summary, scored with ROUGE (HF run_summarization.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from tx.core.data import require_columns
from tx.core.hookspecs import hookimpl
from tx.plugins.seq2seq import Seq2SeqDataArguments, Seq2SeqModelArguments, Seq2SeqTask

HERE = Path(__file__).resolve().parent

# Column names of well-known Hub summarization datasets (text, summary).
KNOWN_COLUMNS = {
    "cnn_dailymail": ("article", "highlights"),
    "abisee/cnn_dailymail": ("article", "highlights"),
    "xsum": ("document", "summary"),
    "EdinburghNLP/xsum": ("document", "summary"),
    "samsum": ("dialogue", "summary"),
    "multi_news": ("document", "summary"),
    "big_patent": ("description", "abstract"),
    "billsum": ("text", "summary"),
}

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass
class SummarizationDataArguments(Seq2SeqDataArguments):
    lang: str | None = field(default=None, metadata={"help": "Language id for summarization (multilingual models)."})
    text_column: str | None = field(
        default=None, metadata={"help": "Column with the full texts (default: the dataset's known column, else the first)."}
    )
    summary_column: str | None = field(
        default=None, metadata={"help": "Column with the summaries (default: the dataset's known column, else the second)."}
    )


def split_sentences(text: str) -> str:
    """One sentence per line, for rougeLsum (a regex instead of nltk's downloadable punkt)."""
    return "\n".join(s for s in _SENTENCE_END.split(text.strip()) if s)


class SummarizationTask(Seq2SeqTask):
    name = "summarization"
    description = "Summarize documents with a seq2seq model (T5, BART...); ROUGE metrics."
    data_dir = HERE / "data"
    metric_dir = HERE / "metrics" / "rouge"
    builtin_model = "t5-tiny-summarization-v1"

    def argument_classes(self) -> tuple[type, type]:
        return Seq2SeqModelArguments, SummarizationDataArguments

    def builtin_defaults(self) -> dict[str, Any]:
        return {
            "max_source_length": 256,
            "max_target_length": 64,
            "num_train_epochs": 5,
            "learning_rate": 2e-3,
            "warmup_steps": 20,
            "per_device_train_batch_size": 8,
            "per_device_eval_batch_size": 64,
        }

    def builtin_texts(self) -> list[str]:
        return [row["document"] for row in self.shipped_rows()]

    def _columns(self, columns: list[str], data: Any) -> tuple[str, str]:
        known = KNOWN_COLUMNS.get(data.dataset_name or "")
        text = data.text_column or (known[0] if known else (columns[0] if columns else "text"))
        summary = data.summary_column or (known[1] if known else (columns[1] if len(columns) > 1 else "summary"))
        return text, summary

    def check_columns(self, columns: list[str], data: Any, where: str) -> None:
        text, summary = self._columns(columns, data)
        require_columns(columns, {"--text_column": text, "--summary_column": summary}, where)

    def source_target(self, batch: Mapping[str, list[Any]], data: Any, columns: list[str]) -> tuple[list[str], list[str]]:
        text, summary = self._columns(columns, data)
        sources, targets = [], []
        for src, tgt in zip(batch[text], batch[summary]):
            sources.append(src if isinstance(src, str) else "")
            targets.append(tgt if isinstance(tgt, str) else "")
        return sources, targets

    def postprocess(self, preds: list[str], labels: list[str]) -> tuple[Any, Any]:
        return [split_sentences(p) for p in preds], [split_sentences(lab) for lab in labels]

    def score(self, metric: Any, preds: Any, labels: Any) -> dict[str, float]:
        result = metric.compute(predictions=preds, references=labels, use_stemmer=True)
        return {k: float(v) * 100 for k, v in result.items()}


@hookimpl
def tx_register_tasks(registry: Any) -> None:
    registry.add(SummarizationTask())
