"""Proof that the generators' output works: for each `tx new-task --kind` and for
`tx new-launcher`, generate a package, check its exact files, `pip install -e` it, see it in
`tx list`, run it on its built-in default to completion, and run the package's own tests.

The packages are installed into a virtual environment layered on the test environment
(`--system-site-packages`: tx, torch, transformers... come from the test environment) rather
than into the shared interpreter itself: other test sessions on the same machine never see a
half-installed plugin, and a killed run cannot leave an entry point behind that breaks every
later `tx` command. Each package is uninstalled again at the end of its test.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from tests.conftest import read_json, run_tx

pytestmark = pytest.mark.scaffold

# tiny models: one thread each is fastest, and several spinning threads per process slow a busy
# 2-CPU machine down many times over
ENV = {"OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}


def expected_files(kind: str, module: str) -> set[str]:
    common = {".gitignore", ".tx-answers.yml", "pyproject.toml", "README.md", "tests/conftest.py",
              f"tests/test_{module}.py", f"{module}/__init__.py"}
    data = {f"{module}/data/{split}.jsonl" for split in ("train", "validation", "test")}
    return common | {
        "seq2seq": data | {f"{module}/preprocess.py", f"{module}/metrics/word_f1/word_f1.py"},
        "classification": data | {f"{module}/preprocess.py", f"{module}/metric.py"},
        "custom": data - {f"{module}/data/test.jsonl"} | {f"{module}/preprocess.py", f"{module}/metric.py"},
        "launcher": set(),
    }[kind]


@pytest.fixture(scope="module")
def python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The interpreter of a venv layered on the test environment (no pip of its own needed:
    the test environment's pip installs into whichever environment runs it)."""
    venv = tmp_path_factory.mktemp("scaffold") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(venv)],
                   check=True, timeout=120)
    return venv / "bin" / "python"


def run(python: Path, *args: str, cwd: Path | None = None, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(python), *args], cwd=str(cwd) if cwd else None, env={**os.environ, **ENV},
                          capture_output=True, text=True, timeout=timeout)


def tx_in(python: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return run(python, "-m", "tx.core.cli", *args, cwd=cwd)


@contextlib.contextmanager
def installed(python: Path, package: Path, dist: str) -> Iterator[None]:
    result = run(python, "-m", "pip", "install", "-e", str(package), "--no-deps", "--no-build-isolation",
                 "--no-input", "-q")
    assert result.returncode == 0, result.stdout + result.stderr
    try:
        yield
    finally:
        result = run(python, "-m", "pip", "uninstall", "-y", dist)
        assert result.returncode == 0, result.stdout + result.stderr
        assert dist not in tx_in(python, "list").stdout


def list_line(stdout: str, section: str, name: str) -> str:
    block = stdout.split(f"{section}:")[1].split(":\n")[0]
    lines = [line for line in block.splitlines() if line.split() and line.split()[0] == name]
    assert len(lines) == 1, stdout
    return lines[0]


def own_tests_pass(python: Path, package: Path, module: str) -> None:
    count = len(re.findall(r"^def test_", (package / "tests" / f"test_{module}.py").read_text(), re.MULTILINE))
    result = run(python, "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=package, timeout=1800)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    summary = result.stdout.strip().splitlines()[-1]
    assert re.match(rf"{count} passed in ", summary), summary


@pytest.mark.parametrize(("kind", "name"), [("seq2seq", "scaf-s2s"), ("classification", "scaf_cls"),
                                            ("custom", "scaf-lm")])
def test_new_task_package_installs_runs_and_passes_its_tests(python: Path, tmp_path: Path, kind: str,
                                                             name: str) -> None:
    made = run_tx("new-task", name, "--kind", kind, "--dir", str(tmp_path))
    assert made.returncode == 0, made.stderr
    module, dist = "tx_" + name.replace("-", "_"), "tx-" + name.replace("_", "-")
    package = tmp_path / f"tx-{name}"
    files = {p.relative_to(package).as_posix() for p in package.rglob("*") if p.is_file()}
    assert files == expected_files(kind, module)

    with installed(python, package, dist):
        listed = tx_in(python, "list")
        assert listed.returncode == 0, listed.stderr
        assert "(from tx new-task --kind " + kind in list_line(listed.stdout, "Tasks", name)
        assert f"{dist} 0.1.0  [entry point: {module}]" in list_line(listed.stdout, "Plugins", name)

        out = tmp_path / "out"
        result = tx_in(python, "run", name, "--output_dir", str(out), "--disable_tqdm", "true")
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        metrics = read_json(out / "all_results.json")
        assert metrics["train_samples"] > 0 and metrics["eval_loss"] > 0
        if kind == "seq2seq":
            assert 0 <= metrics["predict_word_f1"] <= 100
            assert len((out / "generated_predictions.txt").read_text().splitlines()) == 16
        elif kind == "classification":
            assert 0 <= metrics["eval_f1"] <= 1
            assert len((out / "predict_results.txt").read_text().splitlines()) == 17
        else:
            assert 0 <= metrics["eval_accuracy"] <= 1 and "predict_samples" not in metrics
        assert f"task: {name}" in (out / "tx-job.yaml").read_text()

        own_tests_pass(python, package, module)


def test_new_launcher_package_installs_runs_and_passes_its_tests(python: Path, tmp_path: Path) -> None:
    name, module, dist = "scaf-site", "tx_scaf_site", "tx-scaf-site"
    made = run_tx("new-launcher", name, "--dir", str(tmp_path))
    assert made.returncode == 0, made.stderr
    package = tmp_path / f"tx-{name}"
    files = {p.relative_to(package).as_posix() for p in package.rglob("*") if p.is_file()}
    assert files == expected_files("launcher", module)

    with installed(python, package, dist):
        listed = tx_in(python, "list")
        assert "Runs the tx worker through a script" in list_line(listed.stdout, "Launchers", name)
        assert f"{dist} 0.1.0  [entry point: {module}]" in list_line(listed.stdout, "Plugins", name)
        assert f"- launcher {name}: usable" in tx_in(python, "env").stdout

        # the plan through the installed launcher; the package's own tests (below, all must
        # pass) run a real job through it to completion, so it is not trained twice here
        out = tmp_path / "out"
        result = tx_in(python, "run", "summarization", "--launcher", name, "--env", "SCAFFOLD_E2E=1",
                       "--nice", "4", "--output_dir", str(out), "--dry-run")
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert f"# {out / f'tx-{name}.sh'}" in result.stdout and "export SCAFFOLD_E2E=1" in result.stdout
        assert f"exec nice -n 4 {python} -m tx.core.worker {out / 'tx-job.yaml'}" in result.stdout
        assert not out.exists()

        own_tests_pass(python, package, module)
        assert "test_real_job_runs_through_the_launcher" in (package / "tests" / f"test_{module}.py").read_text()

