"""`tx run TASK --help` is readable: tx's flags and the task's arguments first, the launcher's
options, then the training arguments in groups, plain type names, and for every argument the
default a run really uses (checked here against resolved jobs), with `--help-all` for the rest."""

from __future__ import annotations

import enum
import functools
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_tx
from tx.core import plugins, run

ROOT = Path(__file__).resolve().parents[2]
ROW = re.compile(r"^  --(?P<name>\w+)  (?P<kind>[a-z].*?)(?: \[(?P<defaults>[^\]]*)\])?(?:  .*)?$")
KIND = re.compile(r"^(list of )?(int|float|str|bool|path|name or path|path or preset|json|choice of \S+( \(\d+ values, "
                  r"--help-all lists them\))?)$")
TASKS = ("summarization", "translation", "classification")


@functools.lru_cache(maxsize=None)
def help_text(*argv: str) -> str:
    result = run_tx("run", *argv)
    assert result.returncode == 0, result.stderr
    return result.stdout


def rows(text: str) -> dict[str, dict[str, Any]]:
    """HF argument rows (snake_case flags) -> kind and the defaults shown."""
    out: dict[str, dict[str, Any]] = {}
    for line in text.splitlines():
        match = ROW.match(line)
        if not match:
            continue
        shown: dict[str, str] = {}
        for part in (match["defaults"] or "").split("; "):
            key, sep, value = part.partition(": ")
            if sep:
                shown[key] = value
            elif part:
                shown[part] = ""
        out[match["name"]] = {"kind": match["kind"], **shown}
    return out


def parse(text: str) -> Any:
    """A shown default back to a value (what a reader would take it to mean)."""
    if text == "none":
        return None
    if text in ("true", "false"):
        return text == "true"
    if text.startswith('"') or text.startswith("{"):
        import json

        return json.loads(text)
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def plain(value: Any) -> Any:
    """A run's value in the terms help uses (enum members by value, lists as comma lists)."""
    import dataclasses

    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, (list, tuple)):
        return ", ".join(str(plain(v)) for v in value) if value else None
    return value


def same(shown: str, actual: Any, cwd: Path) -> bool:
    expected = plain(actual)
    value = parse(shown)
    if isinstance(expected, str) and isinstance(value, str) and expected.startswith("/") and not value.startswith("/"):
        value = str((cwd / value).resolve())  # a relative default: under the folder the run starts in
    if isinstance(expected, (int, float)) and not isinstance(expected, bool) and isinstance(value, (int, float)):
        return float(value) == float(expected)
    return value == expected


def values_of(resolved: run.Resolved) -> dict[str, Any]:
    import dataclasses

    args = resolved.run_args
    return {f.name: getattr(obj, f.name) for obj in (args.model, args.data, args.training, args.tx)
            for f in dataclasses.fields(obj) if f.init}


@pytest.mark.parametrize("task", TASKS)
def test_every_default_shown_is_the_one_a_run_uses(task: str, tmp_path: Path) -> None:
    shown = rows(help_text(task, "--help-all"))
    assert len(shown) > 100  # every argument, the training arguments included
    loaded = plugins.load()
    # the built-in default run: `tx run TASK`, nothing given
    builtin = values_of(run.resolve(loaded, run.split_tx_flags([task]), cwd=tmp_path))
    # a run with the user's own data (and model): everything else left to the defaults
    data_file = tmp_path / f"mine.{'csv' if task == 'classification' else 'jsonl'}"
    shutil.copy(ROOT / "plugins" / task / "data" / f"train{data_file.suffix}", data_file)
    model = builtin["model_name_or_path"]
    given = {"model_name_or_path", "train_file", "do_train"}
    extra = ["--source_lang", "en", "--target_lang", "xx"] if task == "translation" else []
    yours = values_of(run.resolve(loaded, run.split_tx_flags(
        [task, "--model_name_or_path", model, "--train_file", str(data_file), "--do_train", *extra]), cwd=tmp_path))
    given |= {"source_lang", "target_lang"} if extra else set()
    checked = 0
    for name, row in shown.items():
        if name not in yours:
            continue  # a deprecated spelling (TxArguments alias): not an argument of its own in a run
        if "default" in row and name not in given:
            assert same(row["default"], yours[name], tmp_path), f"--{name}: help says {row['default']!r}, a run uses {yours[name]!r}"
            checked += 1
        # "built-in run" is shown where it differs; otherwise the default is also the built-in run's
        builtin_shown = row.get("built-in run", row.get("default"))
        if builtin_shown is not None:
            assert same(builtin_shown, builtin[name], tmp_path), \
                f"--{name}: help says {builtin_shown!r} for the built-in run, which uses {builtin[name]!r}"
            checked += 1
        else:
            assert "required" in row and name not in builtin or builtin[name] is None, name
    assert checked > 200


def test_the_task_defaults_override_hf_in_help() -> None:
    """The two defaults the HF help gets wrong for tx: a seq2seq task trains on length-grouped
    batches, and the built-in run trains for 5 epochs."""
    shown = rows(help_text("summarization", "--help"))
    assert shown["train_sampling_strategy"]["default"] == "group_by_length"
    assert shown["num_train_epochs"]["built-in run"] == "5"
    assert rows(help_text("classification", "--help"))["train_sampling_strategy"]["default"] == "random"


@pytest.mark.parametrize("task", TASKS)
def test_help_is_short_grouped_and_in_plain_words(task: str) -> None:
    text = help_text(task, "--help")
    lines = text.splitlines()
    assert len(lines) < 150
    assert not re.search(r"\b(Optional|Union|NoneType|typing|<class|<enum)\b|\| None", text)
    plain_rows = rows(text)
    for name, row in plain_rows.items():
        assert KIND.match(row["kind"]), f"--{name}: type {row['kind']!r}"
    # order: tx's flags, the task's arguments, tx's, the launcher's, then the training groups
    starts = ["tx flags:", "model arguments:", "data arguments:", "tx arguments:", "launcher 'local'",
              "training arguments", " what and where:", " batch and schedule:", " optimizer:",
              " evaluation and saving:", " logging:", " performance and precision:", " hub:"]
    where = [next(i for i, line in enumerate(lines) if line.startswith(start)) for start in starts]
    assert where == sorted(where), list(zip(starts, where))
    # the full list has every argument the plain one has, and many more, with the same defaults
    full = rows(help_text(task, "--help-all"))
    assert len(full) > 2 * len(plain_rows)
    for name, row in plain_rows.items():
        assert {k: v for k, v in full[name].items() if k != "kind"} == {k: v for k, v in row.items() if k != "kind"}
