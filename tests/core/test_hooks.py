"""Every hook, exercised for real through the examples of docs/plugins.md.

Each hook section's example is written out as a plugin module and loaded with `tx -p`, so the
guide's code is the code under test: tx_register_tasks (tx list), tx_register_launchers (a
dry run through the new launcher), tx_env_info (tx env) and tx_trainer_callbacks (a tiny real
training run whose callback writes a file).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.conftest import read_json
from tx.core.jobspec import read as read_job

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"


def guide_example(hook: str) -> str:
    """The first python block of the guide's section on ``hook``."""
    text = GUIDE.read_text(encoding="utf-8")
    start = re.search(rf"^### {hook}\(", text, re.MULTILINE)
    assert start, f"docs/plugins.md has no section on {hook}"
    block = re.compile(r"```python\n(.*?)```", re.DOTALL).search(text, start.end())
    assert block, f"the {hook} section has no example"
    return block.group(1)


@pytest.fixture
def plugin(tmp_path: Path):
    """plugin(hook) -> (module name, env) for the guide's example of that hook."""

    def make(hook: str) -> tuple[str, dict[str, str]]:
        name = f"guide_{hook}"
        (tmp_path / "site").mkdir(exist_ok=True)
        (tmp_path / "site" / f"{name}.py").write_text(guide_example(hook), encoding="utf-8")
        path = os.pathsep.join(p for p in (str(tmp_path / "site"), os.environ.get("PYTHONPATH", "")) if p)
        return name, {"PYTHONPATH": path}

    return make


def test_tx_register_tasks_adds_a_listed_task(tx, plugin) -> None:
    module, env = plugin("tx_register_tasks")
    result = tx("-p", module, "list", env=env)
    assert result.returncode == 0, result.stderr
    tasks = result.stdout.split("Launchers:")[0]
    assert re.search(r"^  headline +One-line headlines", tasks, re.MULTILINE), result.stdout
    assert f"[command line (-p): {module}]" in result.stdout
    # without -p the task does not exist
    assert "headline" not in tx("list", env=env).stdout


def test_tx_register_launchers_adds_a_launcher_with_options(tx, plugin, tmp_path: Path) -> None:
    module, env = plugin("tx_register_launchers")
    out = tmp_path / "out"
    result = tx("-p", module, "run", "summarization", "--launcher", "pinned", "--cpus", "0-1",
                "--output_dir", str(out), "--dry-run", env=env)
    assert result.returncode == 0, result.stderr
    plan = result.stdout.split("# plan for launcher 'pinned'")[1]
    assert re.search(rf"^taskset -c 0-1 \S+ -m tx\.core\.worker {re.escape(str(out / 'tx-job.yaml'))}$",
                     plan.strip(), re.MULTILINE), plan
    assert "cpus: 0-1" in result.stdout  # the option is part of the job spec
    assert not out.exists()


def test_tx_env_info_lines_show_in_tx_env(tx, plugin) -> None:
    module, env = plugin("tx_env_info")
    result = tx("-p", module, "env", env={**env, "MY_PLUGIN_CACHE": "/data/my-cache"})
    assert result.returncode == 0, result.stderr
    assert "- my-plugin cache: /data/my-cache" in result.stdout.splitlines()
    assert "- my-plugin cache: (not set)" in tx("-p", module, "env", env=env).stdout.splitlines()


@pytest.mark.train
def test_tx_trainer_callbacks_run_inside_the_trainer(tx, plugin, tmp_path: Path) -> None:
    module, env = plugin("tx_trainer_callbacks")
    out = tmp_path / "out"
    result = tx(
        "-p", module, "run", "summarization", "--output_dir", str(out),
        "--max_train_samples", "8", "--max_steps", "3", "--per_device_train_batch_size", "4",
        "--max_source_length", "64", "--max_target_length", "16",
        "--do_eval", "false", "--do_predict", "false", "--save_strategy", "no", "--report_to", "none",
        env={**env, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    job = read_job(out / "tx-job.yaml")
    assert module in job.plugins  # the worker loaded the -p module too
    assert (out / "steps.log").read_text().splitlines() == [f"{job.job_id} step {n}" for n in (1, 2, 3)]
    assert read_json(out / "trainer_state.json")["global_step"] == 3
