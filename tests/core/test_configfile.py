"""`--config FILE` behaves like the config files of the tools users know: relative paths resolve
against the file's folder, launcher options may sit at the top level, and `--print-config` writes
a config that reruns the same job."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import assert_one_line_error
from tx.core import plugins, run
from tx.core.configfile import option_argv

HERE = Path(__file__).resolve()
SHIPPED = HERE.parents[2] / "plugins" / "summarization" / "data"
BUILTIN_MODEL = "tx-builtin:t5-tiny-summarization-v1"


def resolve(cwd: Path, *argv: str) -> run.Resolved:
    return run.resolve(plugins.load(), run.split_tx_flags(list(argv)), cwd=cwd)


def write(path: Path, data: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def dry_run_spec(stdout: str) -> dict[str, Any]:
    """The job spec printed by --dry-run, without what differs between two resolutions."""
    spec = yaml.safe_load(stdout.split("# plan for launcher")[0])
    return {k: v for k, v in spec.items() if k not in ("job_id", "created")}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project folder with a config in configs/ and data in configs/data/."""
    data = tmp_path / "project" / "configs" / "data"
    data.mkdir(parents=True)
    for split in ("train", "validation"):
        shutil.copy(SHIPPED / f"{split}.jsonl", data / f"{split}.jsonl")
    (tmp_path / "elsewhere").mkdir()
    return tmp_path


def test_relative_paths_in_a_config_resolve_against_its_folder(project: Path) -> None:
    configs = project / "project" / "configs"
    config = write(configs / "job.yaml", {
        "model_name_or_path": BUILTIN_MODEL, "train_file": "data/train.jsonl",
        "validation_file": "./data/validation.jsonl", "output_dir": "../runs/one", "do_train": True,
    })
    cwd = project / "elsewhere"
    shutil.copy(SHIPPED / "test.jsonl", cwd / "mine.jsonl")
    job = resolve(cwd, "summarization", "--config", str(config), "--test_file", "mine.jsonl").job
    assert job.args["train_file"] == str(configs / "data" / "train.jsonl")
    assert job.args["validation_file"] == str(configs / "data" / "validation.jsonl")
    assert job.args["output_dir"] == str(project / "project" / "runs" / "one")
    assert job.args["test_file"] == str(cwd / "mine.jsonl")  # a flag: the current folder
    # a flag given on the command line resolves against the current folder, also over the config
    again = resolve(cwd, "summarization", "--config", str(config), "--output_dir", "here").job
    assert again.args["output_dir"] == str(cwd / "here")


def test_a_relative_config_path_is_found_from_the_current_folder(project: Path) -> None:
    configs = project / "project" / "configs"
    write(configs / "job.yaml", {"model_name_or_path": BUILTIN_MODEL, "train_file": "data/train.jsonl",
                                 "output_dir": "out", "do_train": True})
    job = resolve(project / "project", "summarization", "--config", "configs/job.yaml").job
    assert job.args["output_dir"] == str(configs / "out")


@pytest.mark.parametrize("layout", ["top-level kebab", "top-level snake", "nested"])
def test_launcher_options_at_the_top_level_or_nested(tmp_path: Path, layout: str) -> None:
    from_flags = resolve(tmp_path, "summarization", "--launcher", "torchrun", "--nproc-per-node", "2",
                         "--max-restarts", "1").job.launcher_options
    options = {"nproc-per-node": 2, "max_restarts": 1}
    if layout == "top-level snake":
        options = {k.replace("-", "_"): v for k, v in options.items()}
    data: dict[str, Any] = {"launcher": "torchrun"}
    data.update({"launcher_options": options} if layout == "nested" else options)
    job = resolve(tmp_path, "summarization", "--config", str(write(tmp_path / "c.yaml", data))).job
    assert job.launcher == "torchrun"
    assert job.launcher_options == from_flags and from_flags  # what the same flags give
    # the command line still wins over the file
    over = resolve(tmp_path, "summarization", "--config", str(tmp_path / "c.yaml"), "--nproc-per-node", "3")
    assert over.job.launcher_options["nproc_per_node"] == resolve(
        tmp_path, "summarization", "--launcher", "torchrun", "--nproc-per-node", "3").job.launcher_options["nproc_per_node"]


def test_task_and_launcher_from_the_config(tmp_path: Path) -> None:
    config = write(tmp_path / "c.yaml", {"task": "translation", "launcher": "torchrun"})
    job = resolve(tmp_path, "--config", str(config)).job
    assert (job.task, job.launcher) == ("translation", "torchrun")
    # flags given win, and a `launcher:` key is not taken for an HF argument then
    assert resolve(tmp_path, "--config", str(config), "--launcher", "local").job.launcher == "local"


@pytest.mark.parametrize("data, needles", [
    ({"launcher": "torchrun", "nproc-per-nod": 2}, ("'nproc-per-nod'", "did you mean nproc-per-node")),
    ({"launcher": "torchrun", "launcher_options": {"nproc_per_nod": 2}}, ("--nproc-per-nod", "did you mean --nproc-per-node")),
    ({"rdzv-id": "j1"}, ("'rdzv-id'", "launcher torchrun", "not of 'local'", "launcher: torchrun")),
    ({"learnig_rate": 0.1}, ("'learnig_rate'", "did you mean learning_rate")),
    ({"launcher": "torchrun", "nproc-per-node": 2, "launcher_options": {"nproc_per_node": 3}}, ("set twice",)),
])
def test_unknown_or_misplaced_config_keys_are_refused(tx, tmp_path: Path, data: dict[str, Any],
                                                      needles: tuple[str, ...]) -> None:
    config = write(tmp_path / "c.yaml", data)
    result = tx("run", "summarization", "--config", str(config), "--output_dir", "out", "--dry-run", cwd=tmp_path)
    assert_one_line_error(result, *needles)
    assert not (tmp_path / "out").exists()


def test_option_argv_spells_values_as_flags() -> None:
    assert option_argv("nproc_per_node", 2) == ["--nproc-per-node=2"]
    assert option_argv("requeue", False) == ["--requeue=false"]
    assert option_argv("mount", ["a:b", "c:d"]) == ["--mount=a:b", "--mount=c:d"]
    assert option_argv("partition", None) == []


@pytest.mark.parametrize("argv", [
    ("summarization",),  # the built-in default run
    ("translation", "--launcher", "torchrun", "--nproc-per-node", "2", "--learning_rate", "0.01",
     "--train_file", "data.jsonl", "--model_name_or_path", "tx-builtin:t5-tiny-translation-v1",
     "--source_lang", "en", "--target_lang", "xx", "--do_train", "--output_dir", "rel/out", "--group_by_length",
     "--num_train_epochs", "3", "--hub_token", "hf_" "NOTINCONFIG1234567890"),
])
def test_print_config_reruns_the_same_job(tx, tmp_path: Path, argv: tuple[str, ...]) -> None:
    first = tmp_path / "first"
    first.mkdir()
    shutil.copy(HERE.parents[2] / "plugins" / "translation" / "data" / "train.jsonl", first / "data.jsonl")
    original = tx("run", *argv, "--dry-run", cwd=first)
    assert original.returncode == 0, original.stderr
    printed = tx("run", *argv, "--print-config", cwd=first)
    assert printed.returncode == 0, printed.stderr
    config = yaml.safe_load(printed.stdout)
    assert "NOTINCONFIG" not in printed.stdout  # secrets never land in a file
    assert config["task"] == argv[0] and "job_id" not in config
    assert not (first / "rel").exists() and not (first / "tx-output").exists()  # nothing written
    saved = tmp_path / "saved" / "sub" / "again.yaml"  # another folder, run from a third one
    saved.parent.mkdir(parents=True)
    saved.write_text(printed.stdout, encoding="utf-8")
    third = tmp_path / "third"
    third.mkdir()
    again = tx("run", "--config", str(saved), "--dry-run", cwd=third)
    assert again.returncode == 0, again.stderr
    assert dry_run_spec(again.stdout) == dry_run_spec(original.stdout)
