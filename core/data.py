"""Load the raw datasets of a run (Hub name or local csv/tsv/json/jsonl files), with errors a
user can act on. Shared by every task; tasks pick columns and tokenize."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

from tx.core.errors import DataError

# extension -> datasets builder
BUILDERS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json"}
SPLIT_FILES = (("train", "train_file"), ("validation", "validation_file"), ("test", "test_file"))


def builder_for(path: str) -> str:
    ext = Path(path).suffix.lower()
    if ext not in BUILDERS:
        raise DataError(
            f"data file {path!r} has an unsupported extension {ext or '(none)'!r}",
            hint="use .csv, .tsv, .json or .jsonl",
        )
    return BUILDERS[ext]


def check_file(path: str, flag: str) -> None:
    """Exists, is a readable non-empty file with a supported extension."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{flag} {path!r} does not exist", hint="check the path")
    if p.is_dir():
        raise DataError(f"{flag} {path!r} is a directory", hint="pass a .csv, .tsv, .json or .jsonl file")
    builder_for(path)
    if not os.access(p, os.R_OK):
        raise DataError(f"{flag} {path!r} is not readable", hint="check its permissions")
    if p.stat().st_size == 0:
        raise DataError(f"{flag} {path!r} is empty", hint="pass a file with at least one row")


def _read_head(path: Path, size: int = 1 << 16) -> str:
    raw = path.open("rb").read(size)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(raw) - 4:  # not just a character cut at the end of the read
            line = raw[: exc.start].count(b"\n") + 1
            raise DataError(
                f"data file {str(path)!r} is not UTF-8 (line {line})",
                hint="convert it with e.g. `iconv -t utf-8`",
            ) from None
        return raw[: exc.start].decode("utf-8")


def peek_columns(path: str) -> list[str]:
    """Column names of a local file from its header / first record, without loading it."""
    p = Path(path)
    text = _read_head(p)
    ext = p.suffix.lower()
    if ext in (".csv", ".tsv"):
        first = text.splitlines()[0] if text.splitlines() else ""
        row = next(csv.reader([first], delimiter="\t" if ext == ".tsv" else ","), [])
        return [c.strip() for c in row]
    stripped = text.lstrip()
    if stripped.startswith("["):
        return _json_array_columns(p)
    if stripped.startswith("{") and ext == ".json" and _is_nested_json(stripped):
        return _json_array_columns(p)
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"data file {path!r} line {lineno} is not valid JSON: {exc.msg}",
                hint="each line of a .jsonl/.json file must be one JSON object",
            ) from None
        if not isinstance(record, dict):
            raise DataError(f"data file {path!r} line {lineno} is not a JSON object")
        return list(record)
    return []


def _is_nested_json(text: str) -> bool:
    """A .json file holding one object like {"data": [...]} rather than JSON lines."""
    first_line = text.splitlines()[0].strip()
    return first_line in ("{",) or not first_line.endswith("}")


def _json_array_columns(p: Path) -> list[str]:
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"data file {str(p)!r} line {exc.lineno} is not valid JSON: {exc.msg}") from None
    if isinstance(data, dict):
        data = data.get("data", [])
    if isinstance(data, list) and data and isinstance(data[0], dict):
        return list(data[0])
    return []


def find_bad_json_line(path: str) -> tuple[int, str] | None:
    """First line of a JSON-lines file that does not parse, for the error message."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                json.loads(line)
            except json.JSONDecodeError as exc:
                return lineno, exc.msg
    return None


def data_files(data_args: Any) -> dict[str, str]:
    return {
        split: getattr(data_args, attr)
        for split, attr in SPLIT_FILES
        if getattr(data_args, attr, None)
    }


def load_raw_datasets(data_args: Any, model_args: Any) -> Any:
    """A DatasetDict from `--dataset_name` (Hub) or the local split files."""
    import datasets

    cache_dir = getattr(model_args, "cache_dir", None)
    token = getattr(model_args, "token", None)
    name = getattr(data_args, "dataset_name", None)
    if name:
        try:
            return datasets.load_dataset(
                name, getattr(data_args, "dataset_config_name", None), cache_dir=cache_dir, token=token
            )
        except Exception as exc:  # network, unknown name, bad config: all user-facing
            raise DataError(
                f"cannot load dataset {name!r}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                hint="check the name and config, your network, or pass local --train_file/--validation_file",
            ) from None
    files = data_files(data_args)
    if not files:
        raise DataError(
            "no data: give --dataset_name or at least one of --train_file/--validation_file/--test_file"
        )
    splits = {}
    for split, path in files.items():
        check_file(path, f"--{split if split != 'validation' else 'validation'}_file")
        splits[split] = _load_file(path, cache_dir)
    return datasets.DatasetDict(splits)


def _load_file(path: str, cache_dir: str | None) -> Any:
    import datasets

    builder = builder_for(path)
    kwargs: dict[str, Any] = {}
    if path.lower().endswith(".tsv"):
        kwargs["delimiter"] = "\t"
    try:
        return datasets.load_dataset(builder, data_files={"x": path}, cache_dir=cache_dir, split="x", **kwargs)
    except Exception as exc:
        if builder == "json":
            bad = find_bad_json_line(path)
            if bad:
                raise DataError(
                    f"data file {path!r} line {bad[0]} is not valid JSON: {bad[1]}",
                    hint="fix that line; each line must be one JSON object",
                ) from None
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"cannot read data file {path!r}: {detail}") from None


def require_columns(columns: list[str], wanted: dict[str, str | None], path: str) -> None:
    """`wanted` maps flag -> column name; a missing one is an error listing what exists."""
    for flag, column in wanted.items():
        if column is not None and column not in columns:
            raise DataError(
                f"{flag} {column!r} is not a column of {path}",
                hint=f"available columns: {', '.join(columns) if columns else '(none)'}",
            )
