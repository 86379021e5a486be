"""The slurm launcher's pure parts: rendered sbatch scripts against expected files, option checks,
quoting, and the mapping of `scontrol show job` to `tx status`. No Slurm needed.

Expected scripts live in tests/launchers/expected/; the interpreter path and the tx version are
replaced by PYTHON and VERSION. After an intended change to the script, regenerate them with
``TX_UPDATE_EXPECTED=1 python -m pytest tests/launchers/test_slurm_plan.py`` and review the diff.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import assert_one_line_error, run_tx
from tx.core import __version__
from tx.core.errors import ConfigError
from tx.core.jobspec import JobSpec
from tx.launchers import slurm as sl

EXPECTED = Path(__file__).parent / "expected"
EVIL = "$(touch /tmp/tx-slurm-pwned) `id` 'q' \"dq\" ; rm -rf ~"


@pytest.fixture(scope="module")
def launcher() -> sl.SlurmLauncher:
    from tx.core.plugins import load

    found = load().launchers.get("slurm")
    assert isinstance(found, sl.SlurmLauncher)
    return found


def job(**args: object) -> JobSpec:
    base: dict[str, object] = {
        "model_name_or_path": "/models/t5-small",
        "train_file": "/data/sum/train.jsonl",
        "output_dir": "/runs/demo",
        "source_prefix": EVIL,
        "do_train": True,
    }
    base.update(args)
    return JobSpec(task="summarization", launcher="slurm", args=base, job_id="summarization-20260101-000000-abcd")


def render(launcher: sl.SlurmLauncher, spec: JobSpec, **options: object) -> str:
    opts = sl.SlurmOptions(**options)  # type: ignore[arg-type]
    sl.validate_options(opts)
    the_plan = launcher.plan(spec, opts, spec.job_file)
    assert isinstance(the_plan, sl.SlurmPlan)
    return the_plan.render()


def normalise(script: str) -> str:
    return script.replace(sys.executable, "PYTHON").replace(f"tx {__version__} ", "tx VERSION ")


def check_expected(name: str, script: str) -> None:
    path = EXPECTED / name
    text = normalise(script)
    if os.environ.get("TX_UPDATE_EXPECTED") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.is_file(), f"{path} is missing; run with TX_UPDATE_EXPECTED=1 to create it"
    assert text == path.read_text(encoding="utf-8"), f"the script differs from {path}"


def bash_syntax_ok(script: str, tmp_path: Path) -> None:
    path = tmp_path / "job.sbatch"
    path.write_text(script, encoding="utf-8")
    done = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


# -- rendered scripts ------------------------------------------------------------------------------
def test_single_node_local_script(launcher: sl.SlurmLauncher, tmp_path: Path) -> None:
    script = render(launcher, job())
    check_expected("slurm_single_local.sbatch", script)
    bash_syntax_ok(script, tmp_path)
    lines = script.splitlines()
    assert lines[0] == "#!/bin/bash"
    assert f"#   sbatch /runs/demo/tx-slurm/summarization-20260101-000000-abcd.sbatch" in lines
    assert "#SBATCH --requeue" in lines and "#SBATCH --signal=B:USR2@300" in lines
    # the worker gets the job file and nothing else: no training argument is in the script
    assert f"{sys.executable} -m tx.core.worker /runs/demo/tx-job.yaml &" in script
    for value in (EVIL, "/data/sum/train.jsonl", "/models/t5-small", "touch"):
        assert value not in script


def test_multi_node_torchrun_script(launcher: sl.SlurmLauncher, tmp_path: Path) -> None:
    script = render(
        launcher, job(), nnodes=2, gpus_per_node="4", cpus_per_task=32, mem="200G", time="1-00:00:00",
        partition="gpu", account="proj42", qos="high", constraint="a100|h100", exclusive=True,
        job_name="sum-big", signal_grace=600, max_requeues=5, sbatch_arg=("--mail-type=END",),
        setup=("module load cuda/12.1", "source /opt/venvs/tx/bin/activate"),
    )
    check_expected("slurm_multi_torchrun.sbatch", script)
    bash_syntax_ok(script, tmp_path)
    for line in ("#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=1", "#SBATCH --gpus-per-node=4",
                 "#SBATCH --time=1-00:00:00", "#SBATCH --exclusive", "#SBATCH --signal=B:USR2@600",
                 "#SBATCH --mail-type=END", "module load cuda/12.1"):
        assert line in script.splitlines()
    srun = next(line for line in script.splitlines() if line.startswith("srun "))
    assert "--nodes=2 --ntasks-per-node=1" in srun and "--gpus-per-node=4" in srun
    lines = script.splitlines()
    node_cmd = lines[next(i for i, line in enumerate(lines) if "tx-node" in line) + 1]
    assert "torch.distributed.run" in node_cmd
    # one torchrun per node: 2 nodes x 4 processes, meeting on the first host at a job-derived port
    for arg in ("--nnodes=2", "--nproc-per-node=4", "--rdzv-backend=c10d",
                '"--rdzv-endpoint=${TX_HEAD}:${TX_PORT}"', '"--rdzv-id=${SLURM_JOB_ID}"'):
        assert arg in node_cmd.split(), arg
    assert 'TX_HEAD=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)' in script
    assert "TX_PORT=$((20000 + SLURM_JOB_ID % 20000))" in script
    assert launcher.world_size(sl.SlurmOptions(nnodes=2, gpus_per_node="4")) == 8


def test_multi_node_script_runs_one_rank_per_node(launcher: sl.SlurmLauncher, tmp_path: Path) -> None:
    """Run the rendered per-node command with stand-ins for srun, scontrol and torchrun: each
    node's torchrun gets the same nnodes, rendezvous host (the first host) and job-derived port."""
    script = render(launcher, job(), nnodes=2, gpus_per_node="2", requeue=False)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text("#!/bin/bash\nprintf 'gpu-a017\\ngpu-b002\\n'\n")
    # srun: run the task once per node, the way Slurm does, with SLURM_NODEID set
    (bin_dir / "srun").write_text(
        "#!/bin/bash\nwhile [[ $1 == --* ]]; do shift; done\n"
        "for n in 0 1; do SLURM_NODEID=$n \"$@\"; done\n")
    fake_python = bin_dir / "python"
    fake_python.write_text("#!/bin/bash\necho \"node $SLURM_NODEID: $*\" >> \"$TX_TEST_OUT\"\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    script_file = tmp_path / "job.sbatch"
    script_file.write_text(script.replace(sys.executable, str(fake_python)).replace(
        "/runs/demo/tx-slurm", str(tmp_path)), encoding="utf-8")
    out = tmp_path / "calls.txt"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_ID": "123457",
           "SLURM_JOB_NODELIST": "gpu-a017,gpu-b002", "TX_TEST_OUT": str(out)}
    done = subprocess.run(["bash", str(script_file)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    calls = out.read_text().splitlines()
    assert len(calls) == 2
    for n, call in enumerate(calls):
        assert call.startswith(f"node {n}: -m ") and "torch.distributed.run" in call, call
        assert call.endswith(" --nnodes=2 --nproc-per-node=2 --rdzv-backend=c10d --rdzv-endpoint=gpu-a017:23457 "
                             "--rdzv-id=123457 -m tx.core.worker /runs/demo/tx-job.yaml"), call


def test_deepspeed_scripts(launcher: sl.SlurmLauncher, tmp_path: Path) -> None:
    one = render(launcher, job(deepspeed="zero2"), inner="deepspeed", gpus_per_node="8", requeue=False)
    check_expected("slurm_deepspeed_no_requeue.sbatch", one)
    bash_syntax_ok(one, tmp_path)
    assert "#SBATCH --no-requeue" in one and "--signal=B:" not in one and "trap tx_on_preempt" not in one
    assert 'scontrol requeue "$SLURM_JOB_ID"' not in one
    assert "deepspeed.launcher.runner --num_gpus=8" in one
    # several nodes: srun starts torchrun on each node; the Trainer runs DeepSpeed from --deepspeed
    many = render(launcher, job(deepspeed="zero2"), inner="deepspeed", nnodes=3, gpus_per_node="8")
    check_expected("slurm_deepspeed_multi.sbatch", many)
    assert "--nnodes=3 --nproc-per-node=8 --rdzv-backend=c10d" in many


def test_paths_are_quoted_and_percent_escaped(launcher: sl.SlurmLauncher) -> None:
    script = render(launcher, job(output_dir="/runs/100%_done"))
    assert "#SBATCH --output=/runs/100%%_done/tx-slurm/summarization-20260101-000000-abcd.log" in script
    assert "#SBATCH --chdir=/runs/100%_done" in script


@pytest.mark.parametrize("arg", [
    "--rdzv-endpoint=${TX_HEAD}:${TX_PORT}", "${SLURM_JOB_ID}", "plain", "it's $(touch x) `id` \"q\"",
    "${TX_HEAD}:$(touch /tmp/tx-slurm-pwned)", "a b\tc\nd",
])
def test_shell_word_round_trips(arg: str, tmp_path: Path) -> None:
    """Only the script's own variables expand; everything else reaches the program literally."""
    word = sl.shell_word(arg)
    env = {**os.environ, "TX_HEAD": "node7", "TX_PORT": "20001", "SLURM_JOB_ID": "1"}
    done = subprocess.run(["bash", "-c", f"cd {tmp_path} && printf '%s' {word}"], env=env,
                          capture_output=True, text=True)
    expected = arg.replace("${TX_HEAD}", "node7").replace("${TX_PORT}", "20001").replace("${SLURM_JOB_ID}", "1")
    assert done.stdout == expected
    assert not any(tmp_path.iterdir()) and not Path("/tmp/tx-slurm-pwned").exists()


# -- option checks -------------------------------------------------------------------------------
@pytest.mark.parametrize("options, needle", [
    ({"nnodes": 0}, "--nnodes must be 1 or more"),
    ({"nproc_per_node": 0}, "--nproc-per-node must be 1 or more"),
    ({"nproc_per_node": 2, "inner": "local"}, "--inner local runs one process per node"),
    ({"preempt_signal": "HUP"}, "--preempt-signal must be one of USR2, USR1"),
    ({"time": "tomorrow"}, "--time 'tomorrow' is not a Slurm time limit"),
    ({"time": "3"}, "--signal-grace 300 is not shorter than --time 3 (180 s)"),
    ({"mem": "lots"}, "--mem 'lots' is not a size"),
    ({"gpus_per_node": "x4"}, "--gpus-per-node must be N or TYPE:N"),
    ({"partition": "gpu\n#SBATCH --uid=0"}, "--partition"),
    ({"job_name": "my job"}, "--job-name 'my job' has characters"),
    ({"sbatch_arg": ("--nodes=3",)}, "use tx's --nnodes flag"),
    ({"sbatch_arg": ("--output=/x",)}, "tx writes the log to <output_dir>/tx-slurm/"),
    ({"sbatch_arg": ("mail-type=END",)}, "is not one sbatch option"),
    ({"sbatch_arg": ("--mail-type=END --uid=0",)}, "is not one sbatch option"),
    ({"nnodes": 2, "inner": "local"}, "--inner local runs on one node, and --nnodes is 2"),
    ({"max_requeues": -1}, "--max-requeues must be 0 or more"),
    ({"inner_option": ("nproc-per-node",)}, "is not NAME=VALUE"),
])
def test_bad_options_fail_before_submit(options: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        sl.validate_options(sl.SlurmOptions(**options))  # type: ignore[arg-type]
    assert needle in info.value.one_line()


def test_inner_checks(launcher: sl.SlurmLauncher) -> None:
    with pytest.raises(ConfigError, match="set by the slurm launcher"):
        launcher.validate(job(), sl.SlurmOptions(inner="torchrun", inner_option=("nnodes=4",)))
    with pytest.raises(ConfigError, match="placement launcher"):
        launcher.validate(job(), sl.SlurmOptions(inner="docker"))
    with pytest.raises(ConfigError, match="needs a DeepSpeed config"):
        launcher.validate(job(), sl.SlurmOptions(inner="deepspeed", nnodes=2))
    with pytest.raises(ConfigError, match="spaces, quotes or"):
        launcher.validate(job(output_dir="/runs/my run"), sl.SlurmOptions())
    launcher.validate(job(), sl.SlurmOptions(inner="torchrun", inner_option=("nproc-per-node=2",)))


@pytest.mark.parametrize("value, seconds", [
    ("90", 5400), ("10:30", 630), ("1:00:00", 3600), ("2-12", 216000), ("1-02:03", 93780),
    ("1-00:00:05", 86405), ("UNLIMITED", None),
])
def test_time_seconds(value: str, seconds: int | None) -> None:
    assert sl.time_seconds(value) == seconds


def test_bad_flag_fails_in_the_cli_without_writing_anything(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = run_tx("run", "summarization", "--launcher", "slurm", "--time", "1:00", "--signal-grace", "120",
                    "--output_dir", str(out), cwd=tmp_path)
    assert_one_line_error(result, "--signal-grace 120 is not shorter than --time 1:00 (60 s)")
    assert not out.exists()
    result = run_tx("run", "summarization", "--launcher", "slurm", "--nodez", "2", "--output_dir", str(out), cwd=tmp_path)
    assert_one_line_error(result, "--nodez")
    assert not out.exists()


# -- scontrol -> tx status -------------------------------------------------------------------------
SCONTROL_LINE = (
    "JobId=40 JobName=tx-summarization UserId=root(0) GroupId=root(0) MCS_label=N/A Priority=4294901720 Nice=0 "
    "Account=(null) QOS=(null) JobState=COMPLETED Reason=None Dependency=(null) Requeue=1 Restarts=2 BatchFlag=1 "
    "Reboot=0 ExitCode=0:0 RunTime=00:01:22 TimeLimit=UNLIMITED TimeMin=N/A SubmitTime=2026-11-23T19:14:44 "
    "Partition=debug AllocNode:Sid=localhost:958 ReqNodeList=(null) NodeList=vm BatchHost=vm NumNodes=1 "
    "TRES=cpu=2,mem=21694M,node=1,billing=2 Socks/Node=* NtasksPerN:B:S:C=1:0:*:* "
    "Command=/tmp/r3/tx-slurm/summarization-20261123-191153-9a12.sbatch WorkDir=/tmp/r3 "
    "StdOut=/tmp/r3/tx-slurm/summarization-20261123-191153-9a12.log Power= \n"
)


def test_scontrol_fields_to_status() -> None:
    fields = sl.parse_scontrol(SCONTROL_LINE)
    assert fields["TRES"] == "cpu=2,mem=21694M,node=1,billing=2"
    assert fields["AllocNode:Sid"] == "localhost:958"
    assert fields["Power"] == ""
    status = sl.job_status({"job_id": "j"}, fields)
    assert (status.state, status.elapsed, status.nodes, status.restarts, status.exit_code) == \
        ("COMPLETED", "00:01:22", "vm", 2, 0)
    pending = sl.job_status({"job_id": "j"}, sl.parse_scontrol(
        "JobId=41 JobState=PENDING Reason=BeginTime Restarts=1 ExitCode=0:0 RunTime=00:00:00 NodeList=(null)"))
    assert (pending.state, pending.nodes, pending.restarts, pending.exit_code) == ("PENDING", "", 1, None)
    assert pending.extra["reason"] == "BeginTime"
    failed = sl.job_status({"job_id": "j"}, sl.parse_scontrol("JobId=42 JobState=FAILED ExitCode=138:0"))
    assert sl.wait_exit_code(failed) == 138
    killed = sl.job_status({"job_id": "j"}, sl.parse_scontrol("JobId=43 JobState=CANCELLED ExitCode=0:15"))
    assert sl.wait_exit_code(killed) == 143
    assert sl.wait_exit_code(sl.job_status({"job_id": "j"}, {"JobState": "TIMEOUT", "ExitCode": "0:0"})) == 124


# -- the worker side of a Slurm stop -----------------------------------------------------------------
def test_a_sigterm_delivered_twice_is_one_stop_request() -> None:
    """Slurm signals every process of a step and torchrun forwards the signal to its workers: the
    second copy must not turn "save a checkpoint and stop" into "stop now"."""
    import signal

    from tx.core.interrupt import DUPLICATE_SECONDS, SignalExit, StopFlag

    flag = StopFlag()
    flag.training = True
    flag._handle(signal.SIGTERM, None)
    flag._handle(signal.SIGTERM, None)  # the forwarded copy: ignored
    assert flag.requested and flag.signum == signal.SIGTERM
    flag._first_at -= DUPLICATE_SECONDS + 1  # a SIGTERM well after the first: stop now
    with pytest.raises(SignalExit):
        flag._handle(signal.SIGTERM, None)
    with pytest.raises(SignalExit):  # a Ctrl-C after the first request still stops at once
        flag._handle(signal.SIGINT, None)


# -- process layout, CPUs, preemption signal, node-local paths -------------------------------------
def test_cpus_per_task_follows_the_process_layout(launcher: sl.SlurmLauncher) -> None:
    """Without --cpus-per-task the cluster's default (often 1 CPU) would be shared by every worker
    of a node: the script always asks for CPUs, per worker process, unless told otherwise."""
    assert sl.default_cpus_per_task(sl.SlurmOptions()) == 1
    assert sl.default_cpus_per_task(sl.SlurmOptions(nproc_per_node=3)) == 3
    assert sl.default_cpus_per_task(sl.SlurmOptions(gpus_per_node="a100:4")) == 16  # 4 per GPU process
    assert sl.default_cpus_per_task(sl.SlurmOptions(gpus_per_node="8", nproc_per_node=2)) == 8
    script = render(launcher, job(), nproc_per_node=3, mem="32G")
    assert "#SBATCH --cpus-per-task=3" in script.splitlines() and "#SBATCH --mem=32G" in script.splitlines()
    assert "srun --nodes=1 --ntasks-per-node=1 --cpus-per-task=3 " in script
    assert "torch.distributed.run --nnodes=1 --nproc-per-node=3" in script  # --inner auto: torchrun
    explicit = render(launcher, job(), gpus_per_node="8", cpus_per_task=96)
    assert "#SBATCH --cpus-per-task=96" in explicit and "#SBATCH --mem" not in explicit


def test_the_preemption_signal_is_configurable_and_usr2_by_default(launcher: sl.SlurmLauncher) -> None:
    default = render(launcher, job())
    assert "#SBATCH --signal=B:USR2@300" in default and "trap tx_on_preempt USR2" in default
    assert 'kill -USR2 "$tx_srun"' in default
    usr1 = render(launcher, job(), preempt_signal="USR1")
    assert "#SBATCH --signal=B:USR1@300" in usr1 and "trap tx_on_preempt USR1" in usr1
    # launch tools ignore both, whichever is chosen; only the workers act on it
    assert "trap \"\" USR1 USR2; exec" in default and "trap \"\" USR1 USR2; exec" in usr1


def test_the_worker_saves_on_either_preemption_signal() -> None:
    import signal

    from tx.core.interrupt import HANDLED, SignalExit, StopFlag

    assert signal.SIGUSR1 in HANDLED and signal.SIGUSR2 in HANDLED
    flag = StopFlag()
    flag._handle(signal.SIGUSR2, None)  # outside training: a warning, nothing to save, no exit
    assert not flag.requested
    flag.training = True
    flag._handle(signal.SIGUSR2, None)  # during training: save at the next step and stop
    assert flag.signum == signal.SIGUSR2
    with pytest.raises(SignalExit):
        StopFlag()._handle(signal.SIGTERM, None)


def test_node_local_paths_are_found(launcher: sl.SlurmLauncher) -> None:
    assert sl.node_local_paths(job(), "/shared/venv/bin/python") == []
    spec = job(output_dir="/tmp/runs/x", train_file="/dev/shm/train.jsonl", deepspeed="/var/tmp/ds.json")
    found = sl.node_local_paths(spec, "/tmp/venv/bin/python")
    assert found == [("the Python interpreter", "/tmp/venv/bin/python", "/tmp"), ("output_dir", "/tmp/runs/x", "/tmp"),
                     ("--train_file", "/dev/shm/train.jsonl", "/dev/shm"), ("--deepspeed", "/var/tmp/ds.json", "/var/tmp")]
    assert sl.node_local_paths(job(output_dir="/tmpdata/x"), "/opt/py") == []  # a prefix, not the folder
    plan = launcher.plan(spec, sl.SlurmOptions(), spec.job_file)
    assert len(plan.warnings) == 4 - (not sys.executable.startswith("/tmp/"))
    assert any(w.startswith("output_dir /tmp/runs/x is under /tmp, which each node has for itself") for w in plan.warnings)
