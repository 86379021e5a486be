"""Load the raw datasets of a run (Hub name or local csv/tsv/json/jsonl files), with errors a
user can act on. Shared by every task; tasks pick columns and tokenize."""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
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


def check_file(path: str, flag: str, scan: bool = True) -> None:
    """Exists, is a readable non-empty file with a supported extension; with ``scan`` (before
    launch) a file up to TX_SCAN_LIMIT_MB is also parsed in full (see :func:`scan_file`)."""
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
    if scan:
        scan_file(path)


# -- the full scan before launch ---------------------------------------------------------------
#: Values the csv loader (pandas) reads as missing; a blank field is missing too.
NA_STRINGS = frozenset({"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
                        "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"})


@dataclass(frozen=True)
class FileScan:
    """What a full read of a local data file found: its rows, and per column how many rows have
    no value there (absent, null, NaN or blank text) and the line of the first such row."""

    rows: int
    empty: dict[str, int]
    first_empty: dict[str, int]


_SCANS: dict[tuple[str, int, int], FileScan] = {}


def scan_limit() -> int:
    return int(float(os.environ.get("TX_SCAN_LIMIT_MB", "64")) * (1 << 20))


def scanned(path: str) -> FileScan | None:
    """The scan of ``path`` made by :func:`check_file` in this process, if still current."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return _SCANS.get((str(path), st.st_size, st.st_mtime_ns))


def scan_file(path: str) -> FileScan | None:
    """Parse the whole file (when at most TX_SCAN_LIMIT_MB, default 64; else None and the loader
    reports problems in the worker) so that a bad byte, JSON line or CSV row is reported before
    launch, with its line number, instead of after hours in a queue. A file without any row is an
    error. The result is kept for :func:`require_columns`."""
    st = os.stat(path)
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key in _SCANS:
        return _SCANS[key]
    if st.st_size > scan_limit():
        return None
    lines = _decode_lines(path, Path(path).read_bytes())
    ext = Path(path).suffix.lower()
    rows = _csv_rows(path, lines, ext) if ext in (".csv", ".tsv") else _json_rows(path, lines)
    empty: dict[str, int] = {}
    first: dict[str, int] = {}
    count = 0
    for lineno, row, columns in rows:
        count += 1
        for column in columns:
            if _missing(row.get(column, None), ext):
                empty[column] = empty.get(column, 0) + 1
                first.setdefault(column, lineno)
    if count == 0:
        raise DataError(f"data file {path!r} has no rows",
                        hint="add at least one row (a header or blank lines alone are not data)")
    _SCANS[key] = result = FileScan(rows=count, empty=empty, first_empty=first)
    return result


def _decode_lines(path: str, raw: bytes) -> list[str]:
    lines = raw.split(b"\n")
    out = []
    for lineno, line in enumerate(lines, start=1):
        try:
            out.append(line.decode("utf-8-sig" if lineno == 1 else "utf-8"))
        except UnicodeDecodeError:
            raise DataError(f"data file {path!r} is not UTF-8 text (line {lineno})",
                            hint="convert it, e.g. `iconv -f latin1 -t utf-8 FILE > NEW`") from None
    return out


def _missing(value: Any, ext: str) -> bool:
    if value is None:
        return True
    if isinstance(value, float):
        return value != value  # NaN
    if isinstance(value, str):
        return not value.strip() or (ext in (".csv", ".tsv") and value in NA_STRINGS)
    return False


def _csv_rows(path: str, lines: list[str], ext: str) -> Any:
    """(line, row, columns) for each data row; a row with a broken quote or another number of
    fields than the header is a DataError naming its line."""
    delimiter = "\t" if ext == ".tsv" else ","
    what = "tab-separated" if ext == ".tsv" else "comma-separated"
    physical = [line + "\n" for line in lines]
    if physical and physical[-1] == "\n":
        physical.pop()
    reader = csv.reader(physical, delimiter=delimiter, strict=True)
    header: list[str] | None = None
    start = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise DataError(f"data file {path!r} line {start} is not valid CSV: {exc}",
                            hint="close the quote opened there, or quote the field (\"...\")") from None
        line, start = start, reader.line_num + 1
        if not any(field.strip() for field in row):
            continue
        if header is None:
            header = [c.strip() for c in row]
            continue
        if len(row) != len(header):
            raise DataError(f"data file {path!r} line {line} has {len(row)} {what} fields, the header has {len(header)}",
                            hint="quote fields that contain the separator, or fix that row")
        yield line, dict(zip(header, row)), header


def _json_rows(path: str, lines: list[str]) -> Any:
    """(line, record, columns) for each record of JSON lines, or of a JSON array /
    {"data": [...]} document; a line that does not parse is a DataError naming it."""
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        return
    head = lines[first].lstrip()
    try:
        is_lines = isinstance(json.loads(head), dict)  # one object on the first line: JSON lines
    except json.JSONDecodeError:
        is_lines = not head.startswith("{")  # else a pretty-printed object, or a broken line
    if head.startswith("["):
        is_lines = False
    if not is_lines:
        yield from _json_document(path, "\n".join(lines))
        return
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"data file {path!r} line {lineno} is not valid JSON: {exc.msg}",
                            hint="each line of a JSON-lines file must be one JSON object") from None
        if not isinstance(record, dict):
            raise DataError(f"data file {path!r} line {lineno} is a JSON {type(record).__name__}, not an object",
                            hint='each line must look like {"column": value, ...}')
        yield lineno, record, list(record)


def _json_document(path: str, text: str) -> Any:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"data file {path!r} is not valid JSON at line {exc.lineno}: {exc.msg}",
                        hint="fix the JSON there, or write one JSON object per line (.jsonl)") from None
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list):
        raise DataError(f"data file {path!r} holds one JSON {type(data).__name__}, not rows",
                        hint="write one JSON object per line, or a JSON array of objects")
    columns: list[str] = []
    for record in data:
        if isinstance(record, dict):
            columns.extend(c for c in record if c not in columns)
    for index, record in enumerate(data):
        if not isinstance(record, dict):
            raise DataError(f"data file {path!r}: item {index + 1} of the array is not a JSON object",
                            hint='each item must look like {"column": value, ...}')
        yield index + 1, record, columns


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
        check_file(path, f"--{split}_file", scan=False)  # scanned before launch; the loader reports the rest
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
    """`wanted` maps flag -> column name; a missing one is an error listing what exists.

    When ``path`` was scanned before launch (:func:`check_file`), a wanted column must also
    hold a value in some row, and a column named by a ``--label...`` flag in every row (a
    missing or NaN label is an error naming its line; rows with empty text are the task's call).
    """
    for flag, column in wanted.items():
        if column is not None and column not in columns:
            raise DataError(
                f"{flag} {column!r} is not a column of {path}",
                hint=f"available columns: {', '.join(columns) if columns else '(none)'}",
            )
    found = scanned(path)
    if found is None:
        return
    for flag, column in wanted.items():
        empty = found.empty.get(column or "", 0)
        if column is None or not empty:
            continue
        if empty == found.rows:
            raise DataError(f"column {column!r} ({flag}) of {path} is empty in all {found.rows} rows",
                            hint=f"fill it in, or name the right column with {flag}")
        if flag.startswith("--label"):
            raise DataError(f"line {found.first_empty[column]} of {path} has no label in column {column!r} "
                            f"(missing or NaN; {empty} such rows)", hint="fill in every label or remove those rows")
