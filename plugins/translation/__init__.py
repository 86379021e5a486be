"""The translation task: source-language text -> target-language text, scored with sacreBLEU
(HF run_translation.py). Everything seq2seq lives in the shared base; this module only knows
where the two languages are in a row.

Rows come in two layouts: the WMT one, a ``translation`` object keyed by language code
(``{"translation": {"en": ..., "de": ...}}``, as in Hub datasets such as wmt16), or one
column per language (csv/jsonl with columns ``en`` and ``de``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from tx.core.errors import ConfigError, DataError
from tx.core.hookspecs import hookimpl
from tx.core.task import RunArgs
from tx.plugins.seq2seq import Seq2SeqDataArguments, Seq2SeqModelArguments, Seq2SeqTask

HERE = Path(__file__).resolve().parent
WMT_COLUMN = "translation"


@dataclass
class TranslationDataArguments(Seq2SeqDataArguments):
    source_lang: str | None = field(
        default=None,
        metadata={"help": "Source language id (e.g. en, or en_XX for mBART: the part before '_' "
                  "names the data key when the full code is not one)."},
    )
    target_lang: str | None = field(default=None, metadata={"help": "Target language id (e.g. ro, or ro_RO)."})


def data_key(lang: str, keys: list[str]) -> str:
    """The key of a language in the rows: the code itself when the data uses it, else the part
    before '_' (mBART's en_XX reads the data's en, as in the HF script)."""
    return lang if lang in keys else lang.split("_")[0]


def describe_keys(row: Mapping[str, Any] | None) -> str:
    keys = [k for k, v in (row or {}).items() if v is not None]
    return ", ".join(keys) if keys else "(none)"


def first_row(path: str) -> dict[str, Any] | None:
    """The first record of a JSON-lines file (None for other layouts), without loading it."""
    if not path.lower().endswith((".jsonl", ".json")):
        return None
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            if not line.startswith("{"):
                return None  # a JSON array or pretty-printed object: checked after loading
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                return None  # peek_columns reports the bad line
            return record if isinstance(record, dict) else None
    return None


def first_gap(ds: Any, keys: list[str]) -> tuple[int, dict[str, Any]] | None:
    """Index and content of the first row of a loaded split that lacks one of ``keys`` (absent
    or empty). Read column-wise with Arrow where the rows share one layout, so a multi-million-row
    WMT split is checked fast; rows with differing keys (loaded as JSON values) are read one by one."""
    import pyarrow as pa
    import pyarrow.compute as pc

    nested = WMT_COLUMN in ds.column_names
    table = ds.data.table if hasattr(ds.data, "table") else ds.data
    if nested and not pa.types.is_struct(table.schema.field(WMT_COLUMN).type):
        return _first_gap_rows(ds[WMT_COLUMN], keys)
    offset = 0
    for batch in table.select([WMT_COLUMN] if nested else keys).to_batches():
        holder = batch.column(0) if nested else batch
        fields = [holder.type.field(i).name for i in range(holder.type.num_fields)] if nested else keys
        for key in keys:
            if key not in fields:
                return offset, _row(holder, 0, nested, fields)
            values = pc.struct_field(holder, key) if nested else holder.column(key)
            bad = pc.is_null(values)
            if nested:
                bad = pc.or_(bad, pc.is_null(holder))
            if pc.any(bad).as_py():
                index = pc.index(bad, True).as_py()
                return offset + index, _row(holder, index, nested, fields)
        offset += batch.num_rows
    return None


def _first_gap_rows(rows: Iterable[Any], keys: list[str]) -> tuple[int, dict[str, Any]] | None:
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise DataError(
                f"row {index + 1}: the {WMT_COLUMN!r} value is not an object keyed by language code",
                hint='each row must look like {"translation": {"en": "...", "de": "..."}}',
            )
        if any(row.get(key) is None for key in keys):
            return index, row
    return None


def _row(holder: Any, index: int, nested: bool, fields: list[str]) -> dict[str, Any]:
    if nested:
        return holder[index].as_py() or {}
    return {name: holder.column(name)[index].as_py() for name in fields}


class TranslationTask(Seq2SeqTask):
    name = "translation"
    description = "Translate text with a seq2seq model (T5, mBART, Marian...); sacreBLEU metric."
    data_dir = HERE / "data"
    metric_dir = HERE / "metrics" / "sacrebleu"
    builtin_model = "t5-tiny-translation-v1"
    language_flags = ("--source_lang", "--target_lang")

    def argument_classes(self) -> tuple[type, type]:
        return Seq2SeqModelArguments, TranslationDataArguments

    def builtin_defaults(self) -> dict[str, Any]:
        return {
            "source_lang": "en",
            "target_lang": "xx",
            "max_source_length": 64,
            "max_target_length": 64,
            "num_train_epochs": 3,
            "learning_rate": 1e-3,
            "per_device_train_batch_size": 16,
            "per_device_eval_batch_size": 64,
        }

    def builtin_texts(self) -> list[str]:
        """Both sides of the shipped pairs: the tokenizer must cover source and target words."""
        return [text for row in self.shipped_rows() for text in row[WMT_COLUMN].values()]

    def language_codes(self, data: Any) -> tuple[str | None, str | None]:
        return data.source_lang, data.target_lang

    def validate(self, args: RunArgs) -> None:
        data = args.data
        if not data.source_lang or not data.target_lang:
            missing = " and ".join(f for f, v in (("--source_lang", data.source_lang),
                                                  ("--target_lang", data.target_lang)) if not v)
            raise ConfigError(f"translation needs {missing}", hint=self._key_hint(data))
        super().validate(args)
        from tx.core.data import data_files

        for path in data_files(data).values():
            row = first_row(path)
            if row is not None and isinstance(row.get(WMT_COLUMN), dict):
                self._check_row(row[WMT_COLUMN], data, f"line 1 of {path}")

    @staticmethod
    def _key_hint(data: Any) -> str:
        from tx.core.data import data_files

        for path in data_files(data).values():
            row = first_row(path)
            if row is not None:
                inner = row.get(WMT_COLUMN)
                keys = describe_keys(inner if isinstance(inner, dict) else row)
                return f"the rows of {path} have the keys {keys}"
        return "e.g. --source_lang en --target_lang de"

    def _keys(self, data: Any, available: list[str]) -> list[str]:
        return [data_key(data.source_lang, available), data_key(data.target_lang, available)]

    def _check_row(self, row: Mapping[str, Any], data: Any, where: str) -> None:
        present = [k for k, v in row.items() if v is not None]
        for key in self._keys(data, present):
            if key not in present:
                raise DataError(
                    f"{where} has no {key!r} text (its keys: {describe_keys(row)})",
                    hint="pass --source_lang/--target_lang that match the data",
                )

    def check_columns(self, columns: list[str], data: Any, where: str) -> None:
        if WMT_COLUMN in columns:
            return  # keys inside the objects: checked per row
        wanted = self._keys(data, columns)
        if all(k in columns for k in wanted):
            return
        missing = next(k for k in wanted if k not in columns)
        raise DataError(
            f"{where} has neither a {WMT_COLUMN!r} column nor a {missing!r} column "
            f"(its columns: {', '.join(columns) or '(none)'})",
            hint='use rows like {"translation": {"en": "...", "de": "..."}} or one column per language, '
                 "and --source_lang/--target_lang that match",
        )

    def check_split(self, ds: Any, data: Any, where: str) -> None:
        columns = list(ds.column_names)
        self.check_columns(columns, data, where)
        if WMT_COLUMN in columns and len(ds):
            first = ds[0][WMT_COLUMN]
            keys = self._keys(data, list(first) if isinstance(first, dict) else [])
        else:
            keys = self._keys(data, columns)
        gap = first_gap(ds, keys)
        if gap is not None:
            index, row = gap
            self._check_row(row, data, f"row {index + 1} of {where}")

    def source_target(self, batch: Mapping[str, list[Any]], data: Any, columns: list[str]) -> tuple[list[str], list[str]]:
        if WMT_COLUMN in columns:
            rows = batch[WMT_COLUMN]
            src, tgt = self._keys(data, list(rows[0]) if rows else [])
            return [r[src] for r in rows], [r[tgt] for r in rows]
        src, tgt = self._keys(data, columns)
        return list(batch[src]), list(batch[tgt])

    def postprocess(self, preds: list[str], labels: list[str]) -> tuple[Any, Any]:
        return [p.strip() for p in preds], [[label.strip()] for label in labels]

    def score(self, metric: Any, preds: Any, labels: Any) -> dict[str, float]:
        return {"bleu": float(metric.compute(predictions=preds, references=labels)["score"])}


@hookimpl
def tx_register_tasks(registry: Any) -> None:
    registry.add(TranslationTask())
