"""The process launchers' pure parts: options <-> flags, validation before launch, plan() and
render() of local, torchrun, deepspeed and accelerate; the DeepSpeed presets and the check of a
user DeepSpeed config; the CPU adjustments the worker makes. No process is started here except
the CLI in a few one-line-error tests."""

from __future__ import annotations

import builtins
import dataclasses
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.conftest import assert_one_line_error, run_tx
from tx.core import deepspeed_config, distributed, options
from tx.core.errors import ConfigError, LaunchError
from tx.core.jobspec import JobSpec
from tx.core.launcher import ProcessPlan
from tx.core.plugins import load
from tx.launchers.accelerate import AccelerateLauncher, AccelerateOptions, config_conflicts
from tx.launchers.deepspeed import DeepSpeedLauncher, DeepSpeedOptions
from tx.launchers.local import LocalLauncher
from tx.launchers.torchrun import TorchrunLauncher, TorchrunOptions

PY = sys.executable
JOB_FILE = Path("/runs/r1/tx-job.yaml")
TOOL = f"{PY} -m tx.core.launchtool"


def job(launcher: str = "local", **args: Any) -> JobSpec:
    base = {"output_dir": "/runs/r1", "do_train": True, **args}
    return JobSpec(task="summarization", launcher=launcher, args=base, job_id="summarization-20260101-000000-abcd")


def command(plan: ProcessPlan) -> str:
    """The rendered command line (the last line of render(); notes come first as comments)."""
    lines = plan.render().splitlines()
    assert all(line.startswith("# ") for line in lines[:-1])
    return lines[-1]


@pytest.fixture(scope="module")
def plugins() -> Any:
    return load()


# ---- plan() is pure and frozen, for every process launcher --------------------------------------

@pytest.fixture
def no_side_effects(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any subprocess, socket, file open or directory listing during plan() fails the test."""
    def forbidden(*_a: Any, **_k: Any) -> Any:
        raise AssertionError("plan() must not touch the outside world")

    monkeypatch.setattr(subprocess, "Popen", forbidden)
    monkeypatch.setattr(socket, "socket", forbidden)
    monkeypatch.setattr(builtins, "open", forbidden)
    monkeypatch.setattr(os, "listdir", forbidden)


CASES = [
    (LocalLauncher(), options.build_options(LocalLauncher.options, {}), job()),
    (TorchrunLauncher(), TorchrunOptions(nproc_per_node="2"), job("torchrun")),
    (DeepSpeedLauncher(), DeepSpeedOptions(nproc_per_node=2), job("deepspeed", deepspeed="/cfg/ds.json")),
    (AccelerateLauncher(), AccelerateOptions(num_processes=2), job("accelerate")),
]


@pytest.mark.parametrize("launcher,opts,spec", CASES, ids=[c[0].name for c in CASES])
def test_plan_is_pure_frozen_and_runs_the_worker_with_the_job_file(
    launcher: Any, opts: Any, spec: JobSpec, no_side_effects: None
) -> None:
    first = launcher.plan(spec, opts, JOB_FILE)
    assert first == launcher.plan(spec, opts, JOB_FILE)  # same input, same plan
    assert isinstance(first, ProcessPlan)
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.argv = ()  # type: ignore[misc]
    # every launcher ends in the one worker command, the job file its only argument
    assert first.argv[-3] in ("-m", "--module")  # (DeepSpeed's runner spells it --module)
    assert first.argv[-2:] == ("tx.core.worker", str(JOB_FILE))


def test_rendered_commands() -> None:
    """The exact commands, as `--dry-run` shows them."""
    assert command(LocalLauncher().plan(job(), None, JOB_FILE)) == f"{PY} -m tx.core.worker {JOB_FILE}"
    assert command(TorchrunLauncher().plan(job(), TorchrunOptions(nproc_per_node="2"), JOB_FILE)) == (
        f"{TOOL} torch.distributed.run --nnodes=1 --nproc-per-node=2 --standalone -m tx.core.worker {JOB_FILE}")
    assert command(DeepSpeedLauncher().plan(job(deepspeed="/c.json"), DeepSpeedOptions(nproc_per_node=2), JOB_FILE)) == (
        f"{TOOL} deepspeed.launcher.runner --num_gpus=2 '--master_port={{free_port}}' --no_local_rank "
        f"--module tx.core.worker {JOB_FILE}")
    assert command(AccelerateLauncher().plan(job(bf16=True), AccelerateOptions(num_processes=4), JOB_FILE)) == (
        f"{TOOL} accelerate.commands.launch --num_machines=1 --mixed_precision=bf16 --dynamo_backend=no "
        f"--multi_gpu --num_processes=4 '--main_process_port={{free_port}}' -m tx.core.worker {JOB_FILE}")


# ---- torchrun ----------------------------------------------------------------------------------

def torchrun_cmd(**opts: Any) -> str:
    o = TorchrunOptions(**opts)
    TorchrunLauncher().validate(job("torchrun"), o)
    return command(TorchrunLauncher().plan(job("torchrun"), o, JOB_FILE))


def test_torchrun_rendezvous_follows_the_flags() -> None:
    # one node, nothing given: the rendezvous store takes a free port itself
    assert "--standalone" in torchrun_cmd(nproc_per_node="gpu").split()
    # a fixed port on one node: static rendezvous on this host
    assert "--master-addr=127.0.0.1 --master-port=29555 --node-rank=0 -m" in torchrun_cmd(master_port=29555)
    # several nodes meeting at an elastic c10d endpoint, with restarts
    cmd = torchrun_cmd(nproc_per_node="8", nnodes="2:4", rdzv_endpoint="head:29400", rdzv_id="job7", max_restarts=3)
    assert ("--nnodes=2:4 --nproc-per-node=8 --rdzv-backend=c10d --rdzv-endpoint=head:29400 --rdzv-id=job7 "
            "--max-restarts=3 -m tx.core.worker") in cmd
    assert "--standalone" not in cmd
    # several nodes, static: address, port and this node's rank
    cmd = torchrun_cmd(nnodes="2", node_rank=1, master_addr="10.0.0.5", master_port=29500)
    assert "--nnodes=2 --nproc-per-node=1 --master-addr=10.0.0.5 --master-port=29500 --node-rank=1" in cmd


@pytest.mark.parametrize("opts,needle", [
    ({"nproc_per_node": "two"}, "--nproc-per-node must be a positive number"),
    ({"nproc_per_node": "0"}, "--nproc-per-node must be a positive number"),
    ({"nnodes": "2"}, "--nnodes 2 needs to know where the nodes meet"),
    ({"nnodes": "2", "master_addr": "h", "master_port": 1}, "needs --node-rank"),
    ({"nnodes": "4:2", "rdzv_endpoint": "h:1"}, "MAX is smaller than MIN"),
    ({"nnodes": "1:4"}, "elastic --nnodes 1:4 needs --rdzv-endpoint"),
    ({"rdzv_id": "x"}, "--rdzv-backend and --rdzv-id need --rdzv-endpoint"),
    ({"rdzv_endpoint": "h:1", "master_port": 2}, "give one"),
    ({"node_rank": 1}, "--node-rank 1 is not a node of --nnodes 1"),
    ({"nnodes": "2", "node_rank": 2, "master_addr": "h", "master_port": 1}, "node ranks go from 0 to 1"),
    ({"master_port": 70000}, "--master-port must be a TCP port"),
    ({"max_restarts": -1}, "--max-restarts must be 0 or more"),
])
def test_torchrun_options_are_checked_before_launch(opts: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        TorchrunLauncher().validate(job("torchrun"), TorchrunOptions(**opts))
    assert needle in err.value.one_line()


def test_world_size_known_before_launch() -> None:
    assert LocalLauncher().world_size(None) == 1
    assert TorchrunLauncher().world_size(TorchrunOptions(nproc_per_node="4", nnodes="2")) == 8
    assert TorchrunLauncher().world_size(TorchrunOptions(nproc_per_node="gpu")) is None
    assert DeepSpeedLauncher().world_size(DeepSpeedOptions(nproc_per_node=2, nnodes=3)) == 6
    assert DeepSpeedLauncher().world_size(DeepSpeedOptions()) is None  # DeepSpeed counts the devices
    assert AccelerateLauncher().world_size(AccelerateOptions(num_processes=3)) == 3


# ---- deepspeed ---------------------------------------------------------------------------------

def test_deepspeed_flags_and_fixed_port() -> None:
    o = DeepSpeedOptions(nnodes=2, nproc_per_node=8, hostfile="/etc/hosts", master_addr="node0", master_port=29600)
    cmd = command(DeepSpeedLauncher().plan(job(deepspeed="/c.json"), o, JOB_FILE))
    assert ("deepspeed.launcher.runner --hostfile=/etc/hosts --num_nodes=2 --num_gpus=8 --master_addr=node0 "
            "--master_port=29600 --no_local_rank --module tx.core.worker") in cmd
    assert "{free_port}" not in cmd
    cmd = command(DeepSpeedLauncher().plan(job(deepspeed="/c.json"), DeepSpeedOptions(include="w0@w1:0,2"), JOB_FILE))
    assert "--include=w0@w1:0,2 '--master_port={free_port}'" in cmd


@pytest.mark.parametrize("opts,needle", [
    ({"include": "a", "exclude": "b"}, "--include and --exclude cannot be used together"),
    ({"include": "a", "nproc_per_node": 2}, "cannot be combined with --nproc-per-node"),
    ({"exclude": "not a spec!"}, "is not NODE[:SLOT"),
    ({"nproc_per_node": 0}, "--nproc-per-node must be 1 or more"),
    ({"hostfile": "/no/such/hostfile"}, "--hostfile '/no/such/hostfile' does not exist"),
])
def test_deepspeed_options_are_checked_before_launch(opts: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        DeepSpeedLauncher().validate(job("deepspeed", deepspeed="/c.json"), DeepSpeedOptions(**opts))
    assert needle in err.value.one_line()


def test_deepspeed_launcher_needs_a_deepspeed_config() -> None:
    with pytest.raises(ConfigError) as err:
        DeepSpeedLauncher().validate(job("deepspeed"), DeepSpeedOptions())
    assert "add --deepspeed with a JSON file or a preset: zero1, zero2, zero3" in err.value.one_line()


def test_without_deepspeed_installed_the_launcher_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "deepspeed" else real(name, *a))
    assert "install it with: pip install deepspeed" in (DeepSpeedLauncher().unavailable_reason() or "")
    with pytest.raises(LaunchError) as err:
        DeepSpeedLauncher().validate(job("deepspeed", deepspeed="/c.json"), DeepSpeedOptions())
    assert "deepspeed package is not installed" in err.value.one_line()
    with pytest.raises(ConfigError) as err2:
        deepspeed_config.resolve("zero2")
    assert "install it with: pip install deepspeed" in err2.value.one_line()


def test_presets_ship_with_auto_values_and_resolve_to_their_files() -> None:
    for name in deepspeed_config.PRESETS:
        path = Path(deepspeed_config.resolve(name))
        assert path.is_file() and path.name == f"{name}.json"
        config = json.loads(path.read_text())
        for key in ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "train_batch_size",
                    "gradient_clipping"):
            assert config[key] == "auto", (name, key)
        assert config["fp16"]["enabled"] == "auto" and config["bf16"]["enabled"] == "auto"
        assert config["zero_optimization"]["stage"] == int(name[4])
        for value in config.get("optimizer", {}).get("params", {}).values():
            assert value == "auto", name
        # nothing in a preset can contradict any Trainer arguments
        assert deepspeed_config.mismatches(config, training(), world_size=7) == []
    offload = json.loads(Path(deepspeed_config.resolve("zero3-offload")).read_text())
    assert offload["zero_optimization"]["offload_param"]["device"] == "cpu"
    with pytest.raises(ConfigError, match="neither a file nor a preset"):
        deepspeed_config.resolve("zero4")


def training(**kw: Any) -> SimpleNamespace:
    """The TrainingArguments attributes the DeepSpeed check reads, with transformers' defaults."""
    base = dict(per_device_train_batch_size=8, gradient_accumulation_steps=1, max_grad_norm=1.0,
                learning_rate=5e-5, adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8, weight_decay=0.0,
                fp16=False, fp16_full_eval=False, bf16=False, bf16_full_eval=False)
    base.update(kw)
    return SimpleNamespace(**base)


def test_a_user_deepspeed_config_contradicting_the_trainer_names_both_values() -> None:
    config = {"train_micro_batch_size_per_gpu": 8, "gradient_accumulation_steps": 4, "train_batch_size": 64,
              "gradient_clipping": 1.0, "optimizer": {"params": {"lr": 3e-4, "betas": [0.9, 0.95]}},
              "bf16": {"enabled": True}}
    problems = deepspeed_config.mismatches(config, training(per_device_train_batch_size=4, learning_rate=3e-4),
                                           world_size=2)
    assert problems == [
        "train_micro_batch_size_per_gpu=8 but --per_device_train_batch_size is 4",
        "gradient_accumulation_steps=4 but --gradient_accumulation_steps is 1",
        "optimizer.params.betas=[0.9, 0.95] but --adam_beta1/--adam_beta2 is 0.9/0.999",
        "bf16.enabled=true but --bf16 is false",
        "train_batch_size=64 but 2 processes x --per_device_train_batch_size 4 x --gradient_accumulation_steps 1 is 8",
    ]
    agreeing = training(per_device_train_batch_size=8, gradient_accumulation_steps=4, learning_rate=3e-4,
                        adam_beta2=0.95, bf16=True)
    assert deepspeed_config.mismatches(config, agreeing, world_size=2) == []
    assert deepspeed_config.mismatches(config, agreeing, world_size=None) == []  # total unknown: not checked


def test_contradicting_deepspeed_config_fails_before_launch_in_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "ds.json"
    cfg.write_text(json.dumps({"train_micro_batch_size_per_gpu": 8, "zero_optimization": {"stage": 2}}))
    out = tmp_path / "out"
    result = run_tx("run", "summarization", "--launcher", "deepspeed", "--num-gpus", "2", "--deepspeed", str(cfg),
                    "--per_device_train_batch_size", "4", "--output_dir", str(out))
    assert_one_line_error(result, "train_micro_batch_size_per_gpu=8", "--per_device_train_batch_size is 4", str(cfg))
    assert not out.exists(), "nothing may be written before the job is valid"


# ---- accelerate --------------------------------------------------------------------------------

def test_accelerate_with_a_config_file_passes_only_the_flags_given(tmp_path: Path) -> None:
    cfg = tmp_path / "acc.yaml"
    cfg.write_text("distributed_type: MULTI_GPU\nnum_processes: 8\nmixed_precision: 'no'\n")
    o = AccelerateOptions(accelerate_config=str(cfg), num_processes=2, main_process_port=29601)
    AccelerateLauncher().validate(job("accelerate"), o)
    assert command(AccelerateLauncher().plan(job("accelerate"), o, JOB_FILE)) == (
        f"{TOOL} accelerate.commands.launch --config_file={cfg} --num_processes=2 --main_process_port=29601 "
        f"-m tx.core.worker {JOB_FILE}")
    assert AccelerateLauncher().world_size(AccelerateOptions(accelerate_config=str(cfg))) is None


def test_accelerate_config_contradicting_the_trainer_fails_before_launch(tmp_path: Path) -> None:
    assert config_conflicts({"mixed_precision": "fp16"}, {"bf16": True}) == [
        "mixed_precision: fp16 but the Trainer arguments ask for bf16 (--bf16/--fp16 given)"]
    assert config_conflicts({"mixed_precision": "bf16"}, {"bf16": True}) == []
    cfg = tmp_path / "acc.yaml"
    cfg.write_text("mixed_precision: fp16\n")
    with pytest.raises(ConfigError) as err:
        AccelerateLauncher().validate(job("accelerate"), AccelerateOptions(accelerate_config=str(cfg)))
    assert "mixed_precision: fp16 but the Trainer arguments ask for no" in err.value.one_line()
    with pytest.raises(ConfigError, match="does not exist"):
        AccelerateLauncher().validate(job("accelerate"), AccelerateOptions(accelerate_config=str(tmp_path / "x")))
    with pytest.raises(ConfigError, match="needs --main-process-ip|need --main-process-ip"):
        AccelerateLauncher().validate(job("accelerate"), AccelerateOptions(nnodes=2))


# ---- options <-> flags -------------------------------------------------------------------------

def test_options_are_kebab_flags_taken_out_of_the_command_line() -> None:
    values, rest = options.split_options(
        TorchrunOptions, ["--nproc-per-node", "2", "--do_train", "--master-port=29555", "--learning_rate", "3e-4"])
    assert values == {"nproc_per_node": "2", "master_port": 29555}
    assert rest == ["--do_train", "--learning_rate", "3e-4"]
    assert options.build_options(TorchrunOptions, values) == TorchrunOptions(nproc_per_node="2", master_port=29555)
    with pytest.raises(ConfigError, match="--master-port expects an integer, got 'x'"):
        options.split_options(TorchrunOptions, ["--master-port", "x"])
    with pytest.raises(ConfigError, match="--max-restarts needs a value"):
        options.split_options(TorchrunOptions, ["--max-restarts"])
    with pytest.raises(ConfigError, match="did you mean --nproc-per-node"):
        options.build_options(TorchrunOptions, {"nproc_per_nod": "2"})


def test_a_flag_of_another_launcher_is_named(plugins: Any) -> None:
    from tx.core.run import check_launcher_flags

    local = plugins.launchers.get("local")
    with pytest.raises(ConfigError) as err:
        check_launcher_flags(["--do_train", "--nproc-per-node", "2"], local, list(plugins.launchers))
    # every launcher that starts several processes takes --nproc-per-node; torchrun is the one to suggest
    assert err.value.one_line() == ("--nproc-per-node is an option of launcher accelerate, deepspeed, docker, slurm, "
                                    "torchrun, xla, not of 'local'. add --launcher torchrun, or drop --nproc-per-node.")
    with pytest.raises(ConfigError, match="--rdzv-endpoint is an option of launcher torchrun, not of 'deepspeed'"):
        check_launcher_flags(["--rdzv-endpoint", "h:1"], plugins.launchers.get("deepspeed"), list(plugins.launchers))
    # one word too: --include would otherwise reach the HF parser as a prefix of --include_for_metrics
    with pytest.raises(ConfigError, match="--include is an option of launcher deepspeed"):
        check_launcher_flags(["--include=a"], local, list(plugins.launchers))
    check_launcher_flags(["--seed", "1", "--do_train"], local, list(plugins.launchers))


def test_launcher_flags_never_shadow_a_training_argument(plugins: Any) -> None:
    """HfArgumentParser also accepts --per-device-train-batch-size for --per_device_train_batch_size:
    a launcher flag with the same name would silently take the HF argument's value."""
    from transformers import Seq2SeqTrainingArguments

    hf = {f.name for f in dataclasses.fields(Seq2SeqTrainingArguments)}
    for launcher in plugins.launchers:
        for f in dataclasses.fields(launcher.options):
            assert f.name not in hf, f"launcher {launcher.name}: --{f.name.replace('_', '-')} is a training argument"


def test_run_help_lists_the_launcher_flags() -> None:
    for name, flags in {
        "torchrun": ("--nproc-per-node", "--nnodes", "--node-rank", "--rdzv-backend", "--rdzv-endpoint",
                     "--rdzv-id", "--max-restarts", "--master-port"),
        "deepspeed": ("--nproc-per-node", "--nnodes", "--hostfile", "--include", "--exclude", "--master-port"),
        "accelerate": ("--nproc-per-node", "--nnodes", "--num-processes", "--accelerate-config", "--main-process-port"),
    }.items():
        result = run_tx("run", "--launcher", name, "--help")
        assert result.returncode == 0, result.stderr
        assert f"launcher {name!r} flags:" in result.stdout
        for flag in flags:
            # a flag with native spellings is shown as `--nproc-per-node | --num-gpus`
            assert f"\n  {flag}  " in result.stdout or f"\n  {flag} | " in result.stdout, (name, flag)


def test_a_launcher_flag_without_its_launcher_is_one_clear_error(tmp_path: Path) -> None:
    result = run_tx("run", "summarization", "--nproc-per-node", "2", "--output_dir", str(tmp_path / "o"))
    assert_one_line_error(result, "--nproc-per-node is an option of launcher", "not of 'local'", "add --launcher torchrun")


# ---- the worker's CPU adjustments (tx.core.distributed) ----------------------------------------

def test_cpu_workers_get_use_cpu_and_gloo_visibly() -> None:
    args = {"output_dir": "/o", "deepspeed": "/c.json"}
    out, notes = distributed.cpu_adjustments(args, world_size=2, has_cuda=False)
    assert out == {**args, "use_cpu": True, "ddp_backend": "gloo"}
    assert notes == ["no CUDA device: the 2 processes train on CPUs with --use_cpu True --ddp_backend gloo"]
    # one process, or GPUs: nothing changes
    assert distributed.cpu_adjustments(args, world_size=1, has_cuda=False) == (args, [])
    assert distributed.cpu_adjustments(args, world_size=8, has_cuda=True) == (args, [])
    # the user's own CPU backend is kept; a GPU-only one is refused
    out, _ = distributed.cpu_adjustments({"ddp_backend": "mpi"}, world_size=2, has_cuda=False)
    assert out["ddp_backend"] == "mpi" and out["use_cpu"] is True
    with pytest.raises(ConfigError, match="--ddp_backend nccl needs accelerators"):
        distributed.cpu_adjustments({"ddp_backend": "nccl"}, world_size=2, has_cuda=False)


def test_n_processes_that_are_not_one_job_are_refused() -> None:
    env = {"WORLD_SIZE": "2"}
    one_job = SimpleNamespace(world_size=2, parallel_mode=SimpleNamespace(value="distributed"))
    distributed.check_world_size(one_job, env)
    for bad in (SimpleNamespace(world_size=1, parallel_mode=SimpleNamespace(value="not_parallel")),
                SimpleNamespace(world_size=2, parallel_mode=SimpleNamespace(value="not_parallel"))):
        with pytest.raises(LaunchError, match="the launcher started 2 processes"):
            distributed.check_world_size(bad, env)
    distributed.check_world_size(SimpleNamespace(world_size=1), {})  # started alone: nothing to check
