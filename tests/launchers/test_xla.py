"""The xla launcher.

Fast tests (no torch_xla needed): options, the pure plan and its rendering, the argument fixes,
and the errors the main interpreter (which has no torch_xla) gives before anything is launched.

Tests marked ``xla`` use the real torch_xla 2.9 CPU environment made by scripts/xla-env.sh (a
separate venv, cached; built on first use, which takes minutes): a tiny summarization job runs
through ``tx run --launcher xla --pjrt-device CPU`` and must give the same losses and weights as
the same job on one CPU process, while compiling XLA graphs. If the environment cannot be made,
these tests fail; they never skip.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
import yaml

from tests.conftest import assert_one_line_error, read_json, run_tx
from tx.core.errors import ConfigError, LaunchError
from tx.core.jobspec import JobSpec
from tx.launchers import xla



def job(**args: object) -> JobSpec:
    base: dict[str, object] = {"output_dir": "/runs/demo", "do_train": True}
    base.update(args)
    return JobSpec(task="summarization", launcher="xla", args=base, job_id="summarization-20260101-000000-abcd")


# -- pure parts ------------------------------------------------------------------------------------
def test_plan_on_cpu_is_one_device_in_one_process() -> None:
    spec = job()
    opts = xla.XlaOptions(pjrt_device="CPU", python="/venv/bin/python")
    plan = xla.XlaLauncher().plan(spec, opts, spec.job_file)
    assert plan.argv == ("/venv/bin/python", "-m", "tx.launchers.xla_worker", "/runs/demo/tx-job.yaml")
    assert dict(plan.env) == {"PJRT_DEVICE": "CPU", "CPU_NUM_DEVICES": "1"}
    assert plan.render().splitlines() == [
        "# torch_xla.launch(debug_single_process=True): one device, the worker in this process's main thread",
        "PJRT_DEVICE=CPU CPU_NUM_DEVICES=1 /venv/bin/python -m tx.launchers.xla_worker /runs/demo/tx-job.yaml",
    ]
    assert xla.single_process(opts) and xla.XlaLauncher().world_size(opts) == 1


def test_plan_on_tpu_uses_every_device_unless_told() -> None:
    spec = job()
    launcher = xla.XlaLauncher()
    every = launcher.plan(spec, xla.XlaOptions(), spec.job_file)
    assert every.argv[0] == sys.executable and dict(every.env) == {"PJRT_DEVICE": "TPU"}
    assert "every device the PJRT runtime sees" in every.render()
    assert not xla.single_process(xla.XlaOptions()) and launcher.world_size(xla.XlaOptions()) is None
    one = launcher.plan(spec, xla.XlaOptions(nproc_per_node=1), spec.job_file)
    assert "debug_single_process=True" in one.render()
    eight = launcher.plan(spec, xla.XlaOptions(nproc_per_node=8), spec.job_file)
    assert "on 8 devices (checked at start)" in eight.render() and launcher.world_size(xla.XlaOptions(nproc_per_node=8)) == 8


def test_plan_is_pure_and_equal_for_equal_input() -> None:
    spec = job()
    opts = xla.XlaOptions(nproc_per_node=1)
    assert xla.XlaLauncher().plan(spec, opts, spec.job_file) == xla.XlaLauncher().plan(spec, opts, spec.job_file)


@pytest.mark.parametrize("args, given, known, expected, notes", [
    # nothing chosen: the three fixes
    ({}, set(), {"pad_to_max_length"},
     {"optim": "adamw_torch", "dataloader_pin_memory": False, "pad_to_max_length": True},
     ["--optim adamw_torch", "--dataloader_pin_memory false", "--pad_to_max_length"]),
    # a task without pad_to_max_length gets no such argument
    ({}, set(), set(), {"optim": "adamw_torch", "dataloader_pin_memory": False}, ["--optim", "--dataloader_pin_memory"]),
    # what the user chose stays (a task default is not a user choice)
    ({"optim": "adamw_torch_xla", "dataloader_pin_memory": True, "pad_to_max_length": False},
     {"optim", "dataloader_pin_memory", "pad_to_max_length"}, {"pad_to_max_length"},
     {"optim": "adamw_torch_xla", "dataloader_pin_memory": True, "pad_to_max_length": False}, []),
    ({"pad_to_max_length": False, "optim": "sgd"}, {"optim"}, {"pad_to_max_length"},
     {"pad_to_max_length": True, "optim": "sgd", "dataloader_pin_memory": False},
     ["--dataloader_pin_memory", "--pad_to_max_length"]),
])
def test_xla_adjustments(args: dict, given: set, known: set, expected: dict, notes: list[str]) -> None:
    out, said = xla.xla_adjustments(args, known, given)
    assert out == expected
    assert len(said) == len(notes) and all(s.startswith(n) for s, n in zip(said, notes))
    assert args == dict(args)  # input untouched (pure)


@pytest.mark.parametrize("args", [{}, {"optim": "adamw_torch_fused"}])
def test_fused_adamw_given_by_the_user_is_refused(args: dict) -> None:
    # `--optim adamw_torch_fused` is transformers' default: the job stores nothing for it
    with pytest.raises(ConfigError, match="adamw_torch_fused does not work on XLA devices"):
        xla.xla_adjustments(args, set(), {"optim"})


@pytest.mark.parametrize("opts, message", [
    (xla.XlaOptions(nproc_per_node=0), "--nproc-per-node \\(--num-cores\\) must be 1 or more"),
    (xla.XlaOptions(nnodes=2), "--nnodes 2: --launcher xla starts the workers of one host"),
    (xla.XlaOptions(nproc_per_node=2, pjrt_device="CPU"), "--nproc-per-node 2 with --pjrt-device CPU does not work"),
])
def test_bad_options(opts: xla.XlaOptions, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        xla.validate_options(opts)


def test_interpreter_problems() -> None:
    ok = {"torch_xla": "2.9.0", "torch": "2.9.0+cu128", "tx": "0.1.0"}
    assert xla.interpreter_problem("py", ok) is None
    what, fix = xla.interpreter_problem("py", {**ok, "torch_xla": ""})
    assert what == "torch_xla is not installed for py" and "pip install 'torch_xla[tpu]==2.9.0'" in fix
    assert "scripts/xla-env.sh" in fix
    what, fix = xla.interpreter_problem("py", {**ok, "torch": "2.13.0"})
    assert "torch_xla 2.9.0 needs torch 2.9" in what and "torch==2.9.0 torch_xla==2.9.0" in fix
    what, _ = xla.interpreter_problem("py", {**ok, "tx": ""})
    assert what == "tx is not installed for py"


def test_device_count_check() -> None:
    xla.check_devices(None, 8)
    xla.check_devices(8, 8)
    with pytest.raises(LaunchError, match="--num-cores 4 but torch_xla runs on 8 devices"):
        xla.check_devices(4, 8)


def test_launcher_options_are_in_help() -> None:
    result = tx_inprocess("run", "summarization", "--launcher", "xla", "--help")
    assert result.returncode == 0, result.stderr
    for flag in ("--num-cores", "--pjrt-device", "--python"):
        assert flag in result.stdout


# -- errors before launch, with the main interpreter (no torch_xla in it) ----------------------------
def tx_inprocess(*args: str) -> subprocess.CompletedProcess[str]:
    """The console entry point in this interpreter: `tx run` imports transformers, paid once here."""
    from tx.core.cli import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(args))
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


SMALL = ("--max_train_samples", "8", "--max_eval_samples", "8", "--do_predict", "false", "--report_to", "none")


def test_without_torch_xla_one_line_says_how_to_install(tmp_path: Path) -> None:
    import importlib.util

    assert importlib.util.find_spec("torch_xla") is None, "this test needs a main interpreter without torch_xla"
    result = tx_inprocess("run", "summarization", "--launcher", "xla", "--output_dir", str(tmp_path / "out"), *SMALL)
    line = assert_one_line_error(result, "torch_xla is not installed for", "pip install torch==2.9.0 'torch_xla[tpu]==2.9.0'",
                                 "bash scripts/xla-env.sh")
    assert sys.executable in line
    assert not (tmp_path / "out").exists()
    assert xla.XlaLauncher().unavailable_reason().startswith("torch_xla is not installed")


def test_deepspeed_is_refused(tmp_path: Path) -> None:
    result = tx_inprocess("run", "summarization", "--launcher", "xla", "--deepspeed", "zero2",
                    "--output_dir", str(tmp_path / "out"), *SMALL)
    assert_one_line_error(result, "--deepspeed cannot be used with --launcher xla", "drop --deepspeed")
    assert not (tmp_path / "out").exists()


def test_several_cpu_devices_are_refused(tmp_path: Path) -> None:
    result = tx_inprocess("run", "summarization", "--launcher", "xla", "--pjrt-device", "CPU", "--num-cores", "2",
                    "--output_dir", str(tmp_path / "out"), *SMALL)
    assert_one_line_error(result, "--nproc-per-node 2 with --pjrt-device CPU", "docs/xla-notes.md")


@pytest.mark.parametrize("python, needle", [
    ("/nonexistent/bin/python", "is not an executable file"),
    ("/bin/true", "did not answer like a Python 3 interpreter"),
])
def test_bad_python(tmp_path: Path, python: str, needle: str) -> None:
    result = tx_inprocess("run", "summarization", "--launcher", "xla", "--pjrt-device", "CPU", "--python", python,
                    "--output_dir", str(tmp_path / "out"), *SMALL)
    assert_one_line_error(result, f"--python {python!r}", needle)


def test_bad_pjrt_device(tmp_path: Path) -> None:
    result = tx_inprocess("run", "summarization", "--launcher", "xla", "--pjrt-device", "GPU",
                    "--output_dir", str(tmp_path / "out"), *SMALL)
    assert_one_line_error(result, "--pjrt-device must be one of TPU, CPU")


# -- the real torch_xla CPU environment (fixture xla_python: tests/launchers/conftest.py) ---------
TRAIN = (
    "--max_train_samples", "64", "--max_eval_samples", "8", "--do_predict", "false",
    "--num_train_epochs", "1", "--per_device_train_batch_size", "16", "--per_device_eval_batch_size", "8",
    "--max_source_length", "64", "--max_target_length", "16", "--generation_max_length", "8",
    "--warmup_steps", "0", "--logging_steps", "1", "--save_strategy", "no", "--disable_tqdm", "true",
)
#: what the xla launcher sets by itself, given to the one-process CPU run of the same job
XLA_FIXES = ("--optim", "adamw_torch", "--dataloader_pin_memory", "false", "--pad_to_max_length")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, xla_python: str) -> dict[str, object]:
    """The same tiny job on one CPU process (local launcher) and on one XLA CPU device."""
    base = tmp_path_factory.mktemp("xla")
    local = run_tx("run", "summarization", "--output_dir", str(base / "local"), "--report_to", "none",
                   *TRAIN, *XLA_FIXES)
    assert local.returncode == 0, local.stderr[-3000:]
    on_xla = run_tx("run", "summarization", "--launcher", "xla", "--pjrt-device", "CPU", "--python", xla_python,
                    "--output_dir", str(base / "xla"), *TRAIN, timeout=1500)
    assert on_xla.returncode == 0, on_xla.stdout[-3000:] + on_xla.stderr[-3000:]
    return {"local": base / "local", "xla": base / "xla", "result": on_xla, "python": xla_python}


def _losses(out: Path) -> list[float]:
    history = read_json(out / "trainer_state.json")["log_history"]
    return [entry["loss"] for entry in history if "loss" in entry]


@pytest.mark.xla
def test_xla_trains_and_evaluates_like_one_cpu_process(runs: dict) -> None:
    local, on_xla = read_json(runs["local"] / "all_results.json"), read_json(runs["xla"] / "all_results.json")
    for key in ("train_loss", "eval_loss", "eval_rougeL", "eval_gen_len"):
        assert key in on_xla, on_xla
    assert on_xla["train_samples"] == 64 and on_xla["eval_samples"] == 8
    assert on_xla["train_loss"] == pytest.approx(local["train_loss"], rel=1e-4)
    assert on_xla["eval_loss"] == pytest.approx(local["eval_loss"], rel=1e-4)
    steps_local, steps_xla = _losses(runs["local"]), _losses(runs["xla"])
    assert len(steps_xla) == 4 and steps_xla == pytest.approx(steps_local, rel=1e-4)
    assert steps_xla[-1] < steps_xla[0]  # it learned something

    from safetensors.torch import load_file
    import torch

    a, b = load_file(runs["local"] / "model.safetensors"), load_file(runs["xla"] / "model.safetensors")
    # the XLA save path also writes the tied copies of the shared embedding
    extra = b.keys() - a.keys()
    assert a.keys() <= b.keys() and extra <= {"encoder.embed_tokens.weight", "decoder.embed_tokens.weight",
                                              "lm_head.weight"}, extra
    for name in extra:
        torch.testing.assert_close(b[name], b["shared.weight"], rtol=0, atol=0, msg=name)
    # 4 Adam steps of lr 2e-3 move a weight by up to ~8e-3; float differences between XLA's and
    # eager CPU's kernels left at most 2.2e-5 when measured
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-3, atol=1e-4, msg=name)


@pytest.mark.xla
def test_xla_run_compiled_graphs_on_an_xla_device(runs: dict) -> None:
    out = runs["result"].stdout
    assert "tx: xla: training on xla:0, 1 device(s) of type CPU" in out
    count = int(out.split("tx: xla: ")[-1].split()[0])
    assert count > 0, out[-2000:]  # really XLA, not a silent fallback to eager CPU


@pytest.mark.xla
def test_xla_fixes_are_printed_and_in_the_job_spec(runs: dict) -> None:
    err = runs["result"].stderr
    for note in ("tx: note: --optim adamw_torch", "tx: note: --dataloader_pin_memory false",
                 "tx: note: --pad_to_max_length", "tx: note: --report_to none: tensorboard is not installed"):
        assert note in err, err[-3000:]
    spec = yaml.safe_load((runs["xla"] / "tx-job.yaml").read_text())
    assert spec["launcher"] == "xla"
    assert spec["launcher_options"] == {"pjrt_device": "CPU", "python": runs["python"]}
    assert {k: spec["args"][k] for k in ("optim", "dataloader_pin_memory", "pad_to_max_length")} == \
        {"optim": "adamw_torch", "dataloader_pin_memory": False, "pad_to_max_length": True}


@pytest.mark.xla
def test_xla_dry_run_keeps_user_choices(tmp_path: Path, xla_python: str) -> None:
    result = run_tx("run", "summarization", "--launcher", "xla", "--pjrt-device", "CPU", "--python", xla_python,
                    "--output_dir", str(tmp_path / "out"), "--optim", "adamw_torch_xla", "--pad_to_max_length", "false",
                    "--report_to", "none", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "tx: note: --dataloader_pin_memory false: pinned memory only speeds up copies to a GPU"
    spec = yaml.safe_load(result.stdout.split("# plan for launcher")[0])
    assert spec["args"]["optim"] == "adamw_torch_xla" and "pad_to_max_length" not in spec["args"]
    assert result.stdout.rstrip().endswith(
        f"PJRT_DEVICE=CPU CPU_NUM_DEVICES=1 {xla_python} -m tx.launchers.xla_worker {tmp_path / 'out' / 'tx-job.yaml'}")
    assert not (tmp_path / "out").exists()


@pytest.mark.xla
def test_worker_refuses_a_device_count_it_does_not_get(tmp_path: Path, xla_python: str) -> None:
    """--num-cores N on a runtime with another number of devices fails at start with one line (on
    CPU the launcher refuses N > 1 before launch, so the job file is written by hand here)."""
    spec = JobSpec(task="summarization", launcher="xla", args={"output_dir": str(tmp_path), "do_train": True},
                   launcher_options={"pjrt_device": "CPU", "num_cores": 3})
    from tx.core import jobspec

    path = jobspec.write(spec)
    done = subprocess.run([xla_python, "-m", "tx.launchers.xla_worker", str(path)], capture_output=True, text=True,
                          env={**os.environ, "PJRT_DEVICE": "CPU", "CPU_NUM_DEVICES": "2"}, timeout=600)
    assert done.returncode == 3, done.stdout + done.stderr
    errors = set(line for line in done.stderr.splitlines() if line.startswith("tx: error:"))  # one per device thread
    assert errors == {"tx: error: --num-cores 3 but torch_xla runs on 2 devices. torch_xla.launch uses 1 device or "
                      "all of them: pass --num-cores 1, or leave it out and limit the devices with the PJRT "
                      "runtime's own settings."}, done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.xla
def test_sigterm_saves_a_checkpoint_and_leaves_no_process(tmp_path: Path, xla_python: str) -> None:
    """One device runs the worker in the main thread, so a stop signal saves as with `local`."""
    import re
    import signal
    import time

    out, log = tmp_path / "out", tmp_path / "stderr.txt"
    argv = [sys.executable, "-m", "tx.core.cli", "run", "summarization", "--launcher", "xla", "--pjrt-device", "CPU",
            "--python", xla_python, "--output_dir", str(out), "--max_train_samples", "2000", "--do_eval", "false",
            "--do_predict", "false", "--max_source_length", "32", "--per_device_train_batch_size", "4",
            "--max_steps", "400", "--save_strategy", "no", "--report_to", "none"]
    with open(log, "w") as err:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, text=True)
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and proc.poll() is None:
            steps = [int(n) for n in re.findall(r"\s(\d+)/400 \[", log.read_text())]  # the training bar
            if steps and max(steps) >= 2:  # compiled and training
                break
            time.sleep(1)
        assert proc.poll() is None, log.read_text()[-3000:]
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr = log.read_text()
    assert code == 143, stderr[-3000:]
    assert "Traceback" not in stderr
    line = [x for x in stderr.splitlines() if x.startswith("tx: interrupted: training stopped by SIGTERM")]
    assert line, stderr[-3000:]
    step = int(re.search(r"at step (\d+)", line[0]).group(1))
    assert (out / f"checkpoint-{step}" / "model.safetensors").is_file()
    left = subprocess.run(["pgrep", "-f", f"tx.launchers.xla_worker {out}"], capture_output=True, text=True)
    assert left.stdout == "", left.stdout
