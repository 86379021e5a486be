"""Shell completion as bash asks for it: the real CLI in a subprocess with the completion
environment variables `tx --install-completion` wires into the shell."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from tx.core import plugins
from tx.core.jobs import save_record


def complete(line: str, env: dict[str, str] | None = None) -> list[str]:
    """What bash gets for TAB at the end of ``line`` (a trailing space starts a new word)."""
    words = line.split()
    cword = len(words) if line.endswith(" ") else len(words) - 1
    full_env = dict(os.environ, _TX_COMPLETE="complete_bash", COMP_WORDS=line, COMP_CWORD=str(cword))
    full_env.update(env or {})
    result = subprocess.run([sys.executable, "-m", "tx.core.cli"], env=full_env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return [c for c in result.stdout.splitlines() if c]


@pytest.fixture(scope="module")
def names() -> dict[str, list[str]]:
    loaded = plugins.load()
    return {"tasks": loaded.tasks.names(), "launchers": loaded.launchers.names()}


def test_commands_complete() -> None:
    got = complete("tx ")
    for command in ("run", "list", "env", "status", "logs", "cancel", "report"):
        assert command in got


def test_task_names_after_run(names: dict[str, list[str]]) -> None:
    assert complete("tx run ") == names["tasks"]
    assert "summarization" in names["tasks"]
    assert complete("tx run summ") == ["summarization"]
    assert complete("tx run --launcher local ") == names["tasks"]  # tx flags before the task
    assert complete("tx run summarization ") == []  # a task is there: no second task


def test_launcher_names_after_launcher(names: dict[str, list[str]]) -> None:
    assert complete("tx run summarization --launcher ") == names["launchers"]
    assert complete("tx run summarization --launcher lo") == ["local"]
    # bash splits `--launcher=lo` at "=" into three words
    assert complete("tx run summarization --launcher = lo") == ["local"]


def test_flags_of_tx_the_task_and_the_launcher() -> None:
    got = complete("tx run summarization --")
    for flag in ("--launcher", "--config", "--dry-run", "--from", "--output_dir", "--learning_rate",
                 "--text_column", "--summary_column", "--max_train_samples", "--logging_dir"):
        assert flag in got, flag
    assert "--evaluation_strategy" not in got  # deprecated aliases are not offered
    assert complete("tx run summarization --max_tr") == ["--max_train_samples"]
    assert complete("tx run summarization --config ") == []  # bash then completes file names


def test_plugin_given_with_p_is_used(tmp_path) -> None:
    module = tmp_path / "tx_completion_probe.py"
    module.write_text(
        "from tx.core.hookspecs import hookimpl\n"
        "from tx.core.task import Task\n"
        "class Probe(Task):\n    name = 'probe-task'\n    description = 'a probe'\n"
        "@hookimpl\ndef tx_register_tasks(registry):\n    registry.add(Probe())\n"
    )
    env = {"PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    assert complete("tx -p tx_completion_probe run pro", env=env) == ["probe-task"]


def test_job_ids_for_status_logs_cancel(tmp_path) -> None:
    env = {"TX_CACHE_HOME": str(tmp_path / "cache")}
    old = dict(os.environ)
    os.environ.update(env)
    try:
        save_record({"job_id": "summarization-20250101-000000-aaaa", "launcher": "slurm", "task": "summarization",
                     "output_dir": "/x", "submitted": "2025-01-01T00:00:00", "scheduler_id": "4242"})
        time.sleep(0.01)
        save_record({"job_id": "translation-20250102-000000-bbbb", "launcher": "docker", "task": "translation",
                     "output_dir": "/y", "submitted": "2025-01-02T00:00:00", "scheduler_id": "c0ffee123456"})
    finally:
        os.environ.clear()
        os.environ.update(old)
    for command in ("status", "logs", "cancel"):
        got = complete(f"tx {command} ", env=env)
        assert got == ["translation-20250102-000000-bbbb", "c0ffee123456",
                       "summarization-20250101-000000-aaaa", "4242"], got  # newest first
        assert complete(f"tx {command} summ", env=env) == ["summarization-20250101-000000-aaaa"]
        assert complete(f"tx {command} 42", env=env) == ["4242"]
    assert complete("tx status ", env={"TX_CACHE_HOME": str(tmp_path / "empty")}) == []


def test_install_completion_script_calls_back_into_tx() -> None:
    # Typer's --show-completion names the shell from $SHELL (the word after it is not read): set it,
    # so the test does not depend on the environment CI happens to give
    result = subprocess.run([sys.executable, "-m", "tx.core.cli", "--show-completion", "bash"],
                            capture_output=True, text=True, timeout=60, env={**os.environ, "SHELL": "/bin/bash"})
    assert result.returncode == 0, result.stderr
    assert "_TX_COMPLETE=complete_bash" in result.stdout and "complete -o default" in result.stdout
