"""Third-party plugins load through the same entry-point path as the built-ins.

Each test makes a real installed distribution (a `*.dist-info` folder with `entry_points.txt`)
on PYTHONPATH, so importlib.metadata finds it exactly as it finds a pip-installed plugin.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from tests.conftest import SMALL_SUMMARIZATION, assert_one_line_error, read_json

PLUGIN_SOURCE = '''
from tx.core.hookspecs import hookimpl
from tx.plugins.summarization import SummarizationTask


class HeadlineTask(SummarizationTask):
    name = "{task}"
    description = "Third-party test task: headlines from documents."


@hookimpl
def tx_register_tasks(registry):
    registry.add(HeadlineTask())
'''


def make_dist(site: Path, dist: str, module: str, source: str, ep_name: str | None = None) -> None:
    """Install a distribution by hand: module + dist-info with an entry point in group `tx`."""
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{module}.py").write_text(source)
    info = site / f"{dist.replace('-', '_')}-0.3.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.3.1\n")
    (info / "entry_points.txt").write_text(f"[tx]\n{ep_name or module} = {module}\n")


def env_with(site: Path, **extra: str) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path, **extra}


def test_third_party_task_is_listed(tx, tmp_path: Path) -> None:
    make_dist(tmp_path / "site", "tx-headlines", "tx_headlines", PLUGIN_SOURCE.format(task="headlines"))
    result = tx("list", env=env_with(tmp_path / "site"))
    assert result.returncode == 0, result.stderr
    tasks = result.stdout.split("Launchers:")[0]
    assert "headlines" in tasks and "Third-party test task" in tasks
    plugins = result.stdout.split("Plugins:")[1]
    assert "tx_headlines" in plugins and "tx-headlines 0.3.1" in plugins and "entry point" in plugins


def test_autoload_disabled_loads_builtins_only(tx, tmp_path: Path) -> None:
    make_dist(tmp_path / "site", "tx-headlines", "tx_headlines", PLUGIN_SOURCE.format(task="headlines"))
    result = tx("list", env=env_with(tmp_path / "site", TX_DISABLE_PLUGIN_AUTOLOAD="1"))
    assert result.returncode == 0, result.stderr
    assert "headlines" not in result.stdout
    assert "summarization" in result.stdout


def test_explicit_module_with_p_flag(tx, tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "loose_plugin.py").write_text(PLUGIN_SOURCE.format(task="loose"))
    result = tx("-p", "loose_plugin", "list", env=env_with(site))
    assert result.returncode == 0, result.stderr
    assert "loose" in result.stdout.split("Launchers:")[0]
    assert "command line (-p)" in result.stdout


def test_duplicate_task_names_both_plugins(tx, tmp_path: Path) -> None:
    make_dist(tmp_path / "site", "tx-clash", "tx_clash", PLUGIN_SOURCE.format(task="summarization"))
    result = tx("list", env=env_with(tmp_path / "site"))
    line = assert_one_line_error(result, "'summarization' is registered twice", "tx-clash", "tx-train")
    assert "TX_DISABLE_PLUGIN_AUTOLOAD" in line


def test_broken_plugin_is_named_with_its_distribution(tx, tmp_path: Path) -> None:
    make_dist(tmp_path / "site", "tx-broken", "tx_broken", "import not_a_real_module_xyz\n")
    result = tx("list", env=env_with(tmp_path / "site"))
    assert_one_line_error(result, "'tx_broken'", "tx-broken 0.3.1", "failed to import", "not_a_real_module_xyz")


def test_duplicate_plugin_names(tx, tmp_path: Path) -> None:
    site = tmp_path / "site"
    make_dist(site, "tx-one", "tx_one", PLUGIN_SOURCE.format(task="one"), ep_name="same")
    make_dist(site, "tx-two", "tx_two", PLUGIN_SOURCE.format(task="two"), ep_name="same")
    result = tx("list", env=env_with(site))
    assert_one_line_error(result, "two plugins are named 'same'", "tx-one", "tx-two")


@pytest.mark.train
def test_third_party_task_runs(tx, tmp_path: Path) -> None:
    make_dist(tmp_path / "site", "tx-headlines", "tx_headlines", PLUGIN_SOURCE.format(task="headlines"))
    out = tmp_path / "out"
    result = tx("run", "headlines", "--output_dir", str(out), *SMALL_SUMMARIZATION, env=env_with(tmp_path / "site"))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert read_json(out / "all_results.json")["train_samples"] == 64
    assert "task: headlines" in (out / "tx-job.yaml").read_text()
