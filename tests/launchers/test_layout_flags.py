"""One vocabulary for the process layout: --nproc-per-node and --nnodes for every launcher that
starts processes (each tool's own spelling kept as an alias, underscores accepted), passed on by
slurm and docker to their inner launcher; a flag of another launcher refused by the light `tx`
process itself, before any child imports torch. Fast: no training."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import HEAVY_MODULES, assert_one_line_error, run_tx
from tx.core import options
from tx.core.errors import ConfigError
from tx.core.plugins import load
from tx.launchers.accelerate import AccelerateOptions
from tx.launchers.deepspeed import DeepSpeedOptions
from tx.launchers.torchrun import TorchrunOptions
from tx.launchers.xla import XlaOptions

PROCESS_LAUNCHERS = {"torchrun": TorchrunOptions, "deepspeed": DeepSpeedOptions, "accelerate": AccelerateOptions,
                     "xla": XlaOptions}


@pytest.fixture(scope="module")
def plugins() -> Any:
    return load()


@pytest.mark.parametrize("name", sorted(PROCESS_LAUNCHERS))
@pytest.mark.parametrize("spelling", ["--nproc-per-node", "--nproc_per_node"])
def test_every_process_launcher_takes_the_same_layout_flags(name: str, spelling: str) -> None:
    cls = PROCESS_LAUNCHERS[name]
    values, rest = options.split_options(cls, [spelling, "1", "--nnodes=1", "--do_train"])
    assert rest == ["--do_train"]
    built = options.build_options(cls, values)
    assert str(built.nproc_per_node) == "1" and str(built.nnodes) == "1"


@pytest.mark.parametrize("cls,native,field", [
    (DeepSpeedOptions, "--num-gpus", "nproc_per_node"), (DeepSpeedOptions, "--num_gpus", "nproc_per_node"),
    (DeepSpeedOptions, "--num-nodes", "nnodes"), (AccelerateOptions, "--num-machines", "nnodes"),
    (XlaOptions, "--num-cores", "nproc_per_node"), (XlaOptions, "--num_cores", "nproc_per_node"),
])
def test_each_tools_own_spelling_stays_an_alias(cls: type, native: str, field: str) -> None:
    values, rest = options.split_options(cls, [native, "3"])
    assert rest == [] and getattr(options.build_options(cls, values), field) == 3


def test_saved_jobs_with_the_old_names_still_load_and_two_spellings_must_agree() -> None:
    # a tx-job.yaml written before the rename (launcher_options: {num_gpus: 2}) reruns the same
    assert options.build_options(DeepSpeedOptions, {"num_gpus": 2}) == DeepSpeedOptions(nproc_per_node=2)
    assert options.build_options(XlaOptions, {"num-cores": 1}) == XlaOptions(nproc_per_node=1)
    with pytest.raises(ConfigError, match="--num-gpus and --nproc-per-node are the same option"):
        options.split_options(DeepSpeedOptions, ["--num-gpus", "2", "--nproc-per-node", "4"])
    with pytest.raises(ConfigError, match="same option with two values"):
        options.build_options(DeepSpeedOptions, {"num_gpus": 2, "nproc_per_node": 4})


def test_accelerate_counts_per_node_and_checks_its_total() -> None:
    from tx.launchers.accelerate import launch_args, validate_options

    args = launch_args(AccelerateOptions(nproc_per_node=2, nnodes=2, main_process_ip="h"), {})
    assert "--num_machines=2" in args and "--num_processes=4" in args and "--multi_gpu" in args
    with pytest.raises(ConfigError, match="--num-processes 3 is not --nproc-per-node 2 x --nnodes 1"):
        validate_options(AccelerateOptions(nproc_per_node=2, num_processes=3))


def test_layout_flags_never_shadow_a_task_argument(plugins: Any) -> None:
    """Every spelling of every launcher flag is taken out before the HF parser sees the line, so
    none may be the name of a task's argument (HfArgumentParser accepts both - and _)."""
    from tx.core.hfargs import field_names

    for task_name in plugins.tasks.names():
        hf = {n.replace("_", "-") for n in field_names(plugins.tasks.get(task_name))}
        for launcher in plugins.launchers:
            for flag in options.flags_of(launcher.options):
                assert flag[2:].replace("_", "-") not in hf, (task_name, launcher.name, flag)


def test_slurm_renders_the_layout_for_its_inner_launcher(tmp_path: Path) -> None:
    result = run_tx("run", "summarization", "--launcher", "slurm", "--nnodes", "2", "--nproc-per-node", "4",
                    "--dry-run", "--output_dir", str(tmp_path / "o"))
    assert result.returncode == 0, result.stderr
    script = result.stdout
    assert "#SBATCH --nodes=2" in script and "#SBATCH --cpus-per-task=4" in script
    assert "torch.distributed.run --nnodes=2 --nproc-per-node=4 --rdzv-backend=c10d" in script
    # sbatch's own word for nodes, and an inner deepspeed on one node, take the same numbers
    result = run_tx("run", "summarization", "--launcher", "slurm", "--nodes", "1", "--inner", "deepspeed",
                    "--nproc_per_node", "3", "--dry-run", "--output_dir", str(tmp_path / "o"))
    assert result.returncode == 0, result.stderr
    assert "deepspeed.launcher.runner --num_gpus=3" in result.stdout and "#SBATCH --nodes=1" in result.stdout


def test_docker_passes_the_layout_to_its_inner_launcher(plugins: Any) -> None:
    from tx.core.jobspec import JobSpec
    from tx.launchers import docker as dl

    launcher = plugins.launchers.get("docker")
    job = JobSpec(task="summarization", launcher="docker", args={"output_dir": "/runs/r", "do_train": True},
                  job_id="summarization-20260101-000000-abcd")
    host = dl.HostFacts(uid=1000, gid=1000, cwd="/work", tx_cache="/c/tx", hf_home="/c/hf", python=sys.executable)
    plan = launcher.plan_with(job, dl.DockerOptions(nproc_per_node=2), job.job_file, host)
    assert plan.inner == "torchrun"  # --inner auto: several processes need torchrun
    assert "--nproc-per-node=2" in " ".join(plan.command)
    assert launcher.plan_with(job, dl.DockerOptions(), job.job_file, host).inner == "local"
    with pytest.raises(ConfigError, match="contradicts --nproc-per-node 2"):
        launcher.plan_with(job, dl.DockerOptions(nproc_per_node=2, inner_option=("nproc-per-node=3",)),
                           job.job_file, host)


def _python_starts(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """An environment whose every Python process appends its command line to a file (through a
    sitecustomize module on PYTHONPATH), and that file."""
    import os

    hooks, log = tmp_path / "hooks", tmp_path / "pythons.log"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(
        "import os, sys\n"
        "with open(os.environ['TX_TEST_PYTHONS'], 'a') as fh:\n"
        "    fh.write(' '.join(sys.orig_argv) + '\\n')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hooks), os.environ.get("PYTHONPATH", "")]),
           "TX_TEST_PYTHONS": str(log)}
    return env, log


def test_a_flag_of_another_launcher_is_refused_by_tx_itself(tmp_path: Path) -> None:
    """Before, `tx` started a child Python (tx.core.stage) that imported torch and transformers
    only to refuse the flag. Now the refusal comes from `tx`, which imports none of them."""
    env, log = _python_starts(tmp_path)
    out = tmp_path / "out"
    argv = [sys.executable, "-X", "importtime", "-m", "tx.core.cli", "run", "summarization", "--launcher", "deepspeed",
            "--rdzv-endpoint", "head:29400", "--output_dir", str(out)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
    assert_one_line_error(result, "--rdzv-endpoint is an option of launcher torchrun, not of 'deepspeed'",
                          "add --launcher torchrun")
    assert result.returncode == 2
    started = log.read_text().splitlines()
    assert len(started) == 1 and "tx.core.cli" in started[0], started  # tx only: no tx.core.stage child
    imported = {line.rsplit("|", 1)[1].strip().split(".")[0] for line in result.stderr.splitlines()
                if line.startswith("import time:") and line.count("|") == 2}
    assert "tx" in imported and not imported & set(HEAVY_MODULES), sorted(imported & set(HEAVY_MODULES))
    assert not out.exists()
    # the check is real: a good run of the same launcher does start the child
    result = subprocess.run([*argv[:9], "--nproc-per-node", "1", "--output_dir", str(out), "--do_train", "false",
                             "--do_eval", "false", "--do_predict", "false"],
                            capture_output=True, text=True, timeout=300, env=env)
    assert "nothing to do" in result.stderr
    assert any("tx.core.stage" in line for line in log.read_text().splitlines()), log.read_text()


def test_a_misspelt_layout_flag_gets_a_suggestion(tmp_path: Path) -> None:
    result = run_tx("run", "summarization", "--launcher", "torchrun", "--nproc-per-nod", "2",
                    "--output_dir", str(tmp_path / "o"))
    assert_one_line_error(result, "unknown flag --nproc-per-nod for launcher 'torchrun'",
                          "did you mean --nproc-per-node?")
