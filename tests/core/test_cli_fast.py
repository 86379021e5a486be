"""The CLI's light commands: help, version, list, env — fast and without heavy imports."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import HEAVY_MODULES
from tx.core import __version__

PROBE = """
import json, sys
from tx.core.cli import main
rc = main({argv!r})
print("@@" + json.dumps({{"rc": rc, "heavy": [m for m in {heavy!r} if m in sys.modules]}}))
"""


def _probe(argv: list[str]) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv, heavy=HEAVY_MODULES)],
                         capture_output=True, text=True, timeout=60)
    line = [x for x in out.stdout.splitlines() if x.startswith("@@")][-1]
    return json.loads(line[2:])


@pytest.mark.parametrize("argv", [["--help"], ["list"], ["--version"], ["status"], ["run", "--help"]])
def test_light_commands_import_no_heavy_module(argv: list[str]) -> None:
    result = _probe(argv)
    assert result["rc"] == 0
    assert result["heavy"] == [], f"`tx {' '.join(argv)}` imported {result['heavy']}"


def test_version(tx) -> None:
    result = tx("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"tx {__version__}"


def test_help_lists_commands(tx) -> None:
    result = tx("--help")
    assert result.returncode == 0
    for command in ("run", "list", "env", "status", "logs", "cancel"):
        assert f"  {command}" in result.stdout


def test_list_shows_builtins_with_distribution(tx) -> None:
    result = tx("list")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "summarization" in out.split("Launchers:")[0]
    assert "local" in out.split("Launchers:")[1].split("Plugins:")[0]
    plugins = out.split("Plugins:")[1]
    assert "tx-train" in plugins and "built-in" in plugins and __version__ in plugins


def test_env_reports_versions_and_launchers(tx) -> None:
    result = tx("env")
    assert result.returncode == 0, result.stderr
    import torch
    import transformers

    assert f"- torch version: {torch.__version__}" in result.stdout
    assert f"- transformers version: {transformers.__version__}" in result.stdout
    assert "- launcher local: usable" in result.stdout
    assert "CPU cores" in result.stdout


def test_unknown_command_is_one_line(tx) -> None:
    result = tx("runn")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr


def test_run_help_lists_task_arguments_apart(tx) -> None:
    result = tx("run", "summarization", "--help")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    sections = [line for line in out.splitlines() if line.endswith(":") and not line.startswith(" ")]
    assert "model arguments:" in sections and "data arguments:" in sections
    data = out.split("data arguments:")[1].split("tx arguments:")[0]
    assert "--summary_column" in data and "--source_prefix" in data
    assert "--learning_rate" not in data
    training = out.split("training arguments")[1]
    assert "--learning_rate" in training and "--predict_with_generate" in training
