"""The docker launcher's pure parts (plan, mounts, path translation, status mapping) and the
build context of `tx docker build`; no Docker engine needed."""

from __future__ import annotations

import datetime as dt
import io
import os
import re
import sys
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, assert_one_line_error
from tx.core.errors import ConfigError
from tx.core.jobspec import JobSpec
from tx.launchers import docker as dl

# the inner (local) launcher's command uses this interpreter: the plan must swap it for the image's
HOST = dl.HostFacts(
    uid=1234, gid=567, cwd="/home/ann/work", tx_cache="/home/ann/.cache/tx",
    hf_home="/home/ann/.cache/huggingface", python=sys.executable, bin_dirs=(os.path.dirname(sys.executable),),
)
FAKE_TOKEN = "hf_" "PLANtestTOKENvalue0000"


@pytest.fixture(scope="module")
def launcher() -> dl.DockerLauncher:
    from tx.core.plugins import load

    found = load().launchers.get("docker")
    assert isinstance(found, dl.DockerLauncher)
    return found


def job(**args: object) -> JobSpec:
    base = {
        "model_name_or_path": "/models/t5-small",
        "train_file": "/data/sum/train.jsonl",
        "validation_file": "/data/sum/validation.jsonl",
        "output_dir": "/runs/r1",
        "resume_from_checkpoint": "/runs/r1/checkpoint-4",
        "learning_rate": 0.001,
        "source_prefix": "summarize: ",
        "do_train": True,
    }
    base.update(args)
    return JobSpec(task="summarization", launcher="docker", args=base, job_id="summarization-20260101-000000-abcd")


def plan(launcher: dl.DockerLauncher, spec: JobSpec, **options: object) -> dl.DockerPlan:
    opts = dl.DockerOptions(**options)  # type: ignore[arg-type]
    return launcher.plan_with(spec, opts, spec.job_file, HOST)


def test_mounts_and_translated_job(launcher: dl.DockerLauncher) -> None:
    p = plan(launcher, job())
    by_target = {m.target: m for m in p.mounts}
    assert by_target["/tx/output"].source == "/runs/r1" and not by_target["/tx/output"].read_only
    assert by_target["/tx/cache"].source == HOST.tx_cache and not by_target["/tx/cache"].read_only
    assert by_target["/tx/hf-home"].source == HOST.hf_home
    assert by_target["/tx/inputs/train_file/train.jsonl"].source == "/data/sum/train.jsonl"
    assert by_target["/tx/inputs/train_file/train.jsonl"].read_only
    assert by_target["/tx/inputs/model_name_or_path/t5-small"].read_only
    # the checkpoint lives in the run directory: reached through that mount, not mounted again
    assert not any(m.source.startswith("/runs/r1/") for m in p.mounts)

    assert p.container_job_host_path == "/runs/r1/tx-job.docker.yaml"
    data = yaml.safe_load(p.container_job_text)
    assert data["args"]["output_dir"] == "/tx/output"
    assert data["args"]["resume_from_checkpoint"] == "/tx/output/checkpoint-4"
    assert data["args"]["train_file"] == "/tx/inputs/train_file/train.jsonl"
    assert data["args"]["model_name_or_path"] == "/tx/inputs/model_name_or_path/t5-small"
    assert data["args"]["source_prefix"] == "summarize: " and data["args"]["learning_rate"] == 0.001
    assert data["job_id"] == "summarization-20260101-000000-abcd"
    assert p.command == ("python", "-m", "tx.core.worker", "/tx/output/tx-job.docker.yaml")
    assert p.working_dir == "/tx/output"
    assert p.user == "1234:567"
    env = dict(p.env)
    assert env["HF_HOME"] == "/tx/hf-home" and env["TX_CACHE_HOME"] == "/tx/cache" and env["HOME"] == "/tmp"
    labels = dict(p.labels)
    assert labels["tx.job-id"] == "summarization-20260101-000000-abcd"
    assert labels["tx.task"] == "summarization" and labels["tx.launcher"] == "docker"
    assert p.name == "tx-summarization-20260101-000000-abcd"


def test_hub_names_and_builtin_models_are_not_paths(launcher: dl.DockerLauncher) -> None:
    p = plan(launcher, job(model_name_or_path="google-t5/t5-small", tokenizer_name="tx-builtin:x"))
    data = yaml.safe_load(p.container_job_text)
    assert data["args"]["model_name_or_path"] == "google-t5/t5-small"
    assert data["args"]["tokenizer_name"] == "tx-builtin:x"
    assert not any("model_name_or_path" in m.target for m in p.mounts)


def test_user_mounts_translate_paths_under_them(launcher: dl.DockerLauncher) -> None:
    p = plan(launcher, job(), mount=("/data:/corpus:ro", "relative/models:/models"))
    data = yaml.safe_load(p.container_job_text)
    assert data["args"]["train_file"] == "/corpus/sum/train.jsonl"
    by_target = {m.target: m for m in p.mounts}
    assert by_target["/corpus"].read_only and by_target["/corpus"].source == "/data"
    assert by_target["/models"].source == "/home/ann/work/relative/models"  # against the caller's cwd
    assert not any(m.target.startswith("/tx/inputs/train_file") for m in p.mounts)


def test_output_under_a_read_only_mount_still_gets_a_writable_mount(launcher: dl.DockerLauncher) -> None:
    p = plan(launcher, job(), mount=("/runs:/runs:ro",))
    data = yaml.safe_load(p.container_job_text)
    assert data["args"]["output_dir"] == "/tx/output"
    p2 = plan(launcher, job(), mount=("/runs:/work",))
    assert yaml.safe_load(p2.container_job_text)["args"]["output_dir"] == "/work/r1"
    assert p2.working_dir == "/work/r1"


def test_offline_container_resolves_its_own_name(launcher: dl.DockerLauncher) -> None:
    """torchrun's rendezvous connects to the container's host name: with --network none it
    must resolve to loopback."""
    p = plan(launcher, job(), network="none")
    assert p.hostname == "tx-summarization-20260101-000000-abcd"
    assert p.extra_hosts == ((p.hostname, "127.0.0.1"),)
    assert f"--add-host {p.hostname}:127.0.0.1" in p.render()
    assert plan(launcher, job()).extra_hosts == ()  # the engine's network resolves it
    assert plan(launcher, job(), network="host").hostname == ""  # the host's own name
    assert len(dl.container_hostname("x" * 100)) <= 63


def test_same_basename_from_two_places_gets_two_targets(launcher: dl.DockerLauncher) -> None:
    p = plan(launcher, job(train_file="/a/data.jsonl", validation_file="/b/data.jsonl"))
    targets = [m.target for m in p.mounts if m.target.startswith("/tx/inputs/")]
    assert len(targets) == len(set(targets))


def test_host_executables_become_image_commands() -> None:
    host = dl.HostFacts(uid=0, gid=0, cwd="/", tx_cache="/c", hf_home="/h", python="/opt/py/bin/python3.11",
                        bin_dirs=("/opt/py/bin",))
    argv = ("/opt/py/bin/python3.11", "-m", "torch.distributed.run", "/opt/py/bin/torchrun", "/usr/bin/env", "x")
    assert dl.containerize_argv(argv, host) == ("python", "-m", "torch.distributed.run", "torchrun", "/usr/bin/env", "x")


def test_secrets_are_names_only(launcher: dl.DockerLauncher, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    monkeypatch.setenv("MY_SECRET", FAKE_TOKEN)
    p = plan(launcher, job(), env=("MY_SECRET",))
    assert "HF_TOKEN" in p.pass_env and "MY_SECRET" in p.pass_env
    assert FAKE_TOKEN not in repr(p) and FAKE_TOKEN not in p.render()


def test_render_is_a_docker_run_line(launcher: dl.DockerLauncher) -> None:
    text = plan(launcher, job(), gpus="2", memory="16g", network="host", ipc="host").render()
    line = text.splitlines()[-1]
    assert line.startswith("docker run --name tx-summarization-")
    assert "--gpus 2" in line and "--memory 16g" in line and "--network host" in line and "--ipc host" in line
    assert "--shm-size" not in line  # --ipc host replaces it
    assert "--mount type=bind,src=/data/sum/train.jsonl,dst=/tx/inputs/train_file/train.jsonl,readonly" in line
    assert line.endswith("--entrypoint python tx:latest -m tx.core.worker /tx/output/tx-job.docker.yaml")


@pytest.mark.parametrize("spec, message", [
    ("/a", "not SRC:DST"),
    ("/a:rel", "must be absolute"),
    ("/a:/tx/output", "overlaps /tx/output"),
    ("/a:/tx", "overlaps"),
])
def test_bad_mounts(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        dl.parse_mount(spec, "/")


@pytest.mark.parametrize("options, message", [
    (dict(gpus="many"), "--gpus"),
    (dict(shm_size="lots"), "--shm-size"),
    (dict(memory="1x"), "--memory"),
    (dict(ipc="none!"), "--ipc"),
    (dict(user="ann"), "--user"),
    (dict(env=("TOKEN=abc",)), "gives a value"),
    (dict(env=("1BAD",)), "not an environment variable name"),
    (dict(inner_option=("nproc",)), "NAME=VALUE"),
])
def test_bad_options(options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        dl.validate_options(dl.DockerOptions(**options))


def test_inner_must_be_a_process_launcher(launcher: dl.DockerLauncher) -> None:
    with pytest.raises(ConfigError, match="placement launcher"):
        plan(launcher, job(), inner="docker")
    with pytest.raises(ConfigError, match="unknown launcher option"):
        plan(launcher, job(), inner="local", inner_option=("nproc-per-node=2",))


def test_device_requests() -> None:
    assert dl.device_requests("none", True) == []
    assert dl.device_requests("auto", False) == []
    assert dl.device_requests("auto", True) == [{"count": -1, "capabilities": [["gpu"]]}]
    assert dl.device_requests("all", False) == [{"count": -1, "capabilities": [["gpu"]]}]
    assert dl.device_requests("2", True) == [{"count": 2, "capabilities": [["gpu"]]}]


NOW = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.timezone.utc)


def attrs(status: str, code: int = 0, oom: bool = False, finished: str = "2026-01-01T11:59:30.123456789Z") -> dict:
    return {
        "Id": "abcdef1234567890", "Name": "/tx-job", "RestartCount": 0, "Config": {"Image": "tx:cpu"},
        "State": {"Status": status, "ExitCode": code, "OOMKilled": oom, "Error": "",
                  "StartedAt": "2026-01-01T11:58:00.5Z",
                  "FinishedAt": finished if status in ("exited", "dead") else "0001-01-01T00:00:00Z"},
    }


@pytest.mark.parametrize("status, code, oom, cancelled, state, shown_code", [
    ("running", 0, False, False, "RUNNING", None),
    ("created", 0, False, False, "PENDING", None),
    ("exited", 0, False, False, "COMPLETED", 0),
    ("exited", 3, False, False, "FAILED", 3),
    ("exited", 137, True, False, "FAILED", 137),
    ("exited", 143, False, True, "CANCELLED", 143),
    ("dead", 1, False, False, "FAILED", 1),
])
def test_container_status(status: str, code: int, oom: bool, cancelled: bool, state: str, shown_code: int | None) -> None:
    record = {"job_id": "j", "cancelled": cancelled}
    st = dl.container_status(record, attrs(status, code, oom), NOW)
    assert (st.state, st.exit_code) == (state, shown_code)
    if oom:
        assert "out of memory" in st.extra["reason"]


def test_status_elapsed() -> None:
    assert dl.container_status({"job_id": "j"}, attrs("exited"), NOW).elapsed == "0:01:29"
    assert dl.container_status({"job_id": "j"}, attrs("running"), NOW).elapsed == "0:01:59"


def test_cli_rejects_bad_docker_flags_in_one_line(tx, tmp_path: Path) -> None:
    result = tx("run", "summarization", "--launcher", "docker", "--env", f"HF_TOKEN={FAKE_TOKEN}",
                "--output_dir", str(tmp_path / "o"), "--dry-run")
    line = assert_one_line_error(result, "--env HF_TOKEN=... gives a value")
    assert FAKE_TOKEN not in result.stderr + result.stdout + line
    result = tx("run", "summarization", "--launcher", "docker", "--mount", f"{tmp_path}/missing:/m",
                "--output_dir", str(tmp_path / "o"), "--dry-run")
    assert_one_line_error(result, "does not exist")


def test_dry_run_shows_the_container(tx, tmp_path: Path) -> None:
    result = tx("run", "summarization", "--launcher", "docker", "--image", "tx:cpu", "--output_dir",
                str(tmp_path / "o"), "--dry-run", env={"HF_TOKEN": FAKE_TOKEN})
    assert result.returncode == 0, result.stderr
    assert "docker run --name tx-summarization-" in result.stdout
    assert "--env HF_TOKEN " in result.stdout and FAKE_TOKEN not in result.stdout
    assert not (tmp_path / "o").exists()


# -- tx docker build: the context --------------------------------------------------------------------
def test_subpackages_match_pyproject() -> None:
    from tx.core.dockerimage import SUBPACKAGES

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    top = {name.split(".")[1] for name in config["packages"]}
    assert top == set(SUBPACKAGES)


def test_requirements_follow_the_distribution() -> None:
    from tx.core.dockerimage import requirements

    base = requirements()
    assert any(r.startswith("torch") for r in base) and any(r.startswith("transformers") for r in base)
    # one install gives every launcher: DeepSpeed, the Docker SDK and matplotlib are base requirements
    for name in ("deepspeed", "docker", "matplotlib"):
        assert any(r.startswith(name) for r in base), (name, base)
    assert not any(r.startswith("pytest") for r in base)  # the test extra stays out of images
    assert any(r.startswith("pytest") for r in requirements(["test"]))
    with pytest.raises(ConfigError, match="unknown extra"):
        requirements(["nope"])


def test_installed_wheel_is_complete_and_reproducible() -> None:
    from tx.core.dockerimage import installed_wheel

    name, data = installed_wheel()
    assert re.fullmatch(r"tx_train-[\w.]+-py3-none-any\.whl", name)
    assert installed_wheel()[1] == data  # same files, same bytes: the image layer is reused
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    for needed in ("tx/core/cli.py", "tx/launchers/docker.py", "tx/docker/Dockerfile", "tx/docker/Dockerfile.cpu",
                   "tx/plugins/summarization/data/train.jsonl"):
        assert needed in names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    distinfo = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    text = zipfile.ZipFile(io.BytesIO(data)).read(distinfo[0]).decode()
    assert "docker = tx.launchers.docker" in text and "tx = tx.core.cli:main" in text
    meta = zipfile.ZipFile(io.BytesIO(data)).read(distinfo[0].replace("entry_points.txt", "METADATA")).decode()
    assert f"\nVersion: {metadata.version('tx-train')}\n" in meta and "Requires-Dist: torch" in meta


def test_save_context(tx, tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "demo-1.0-py3-none-any.whl").write_bytes(b"not really a wheel")
    target = tmp_path / "ctx"
    result = tx("docker", "build", "--cpu", "--tag", "x:y", "--base-image", "tx-base:bookworm",
                "--wheelhouse", str(wheels), "--save-context", str(target))
    assert result.returncode == 0, result.stderr
    assert f"docker build --network none --build-arg BASE_IMAGE=tx-base:bookworm -t x:y {target}" in result.stdout
    assert (target / "Dockerfile").read_text() == (ROOT / "docker" / "Dockerfile.cpu").read_text()
    assert (target / "wheels" / "demo-1.0-py3-none-any.whl").read_bytes() == b"not really a wheel"
    assert "torch" in (target / "requirements.txt").read_text()
    assert len(list((target / "dist").glob("tx_train-*.whl"))) == 1
    again = tx("docker", "build", "--save-context", str(target))
    assert_one_line_error(again, "not empty")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_one_line_error(tx("docker", "build", "--wheelhouse", str(empty), "--save-context", str(tmp_path / "c2")),
                          "holds no wheels")


def test_context_hash_tracks_content_and_args() -> None:
    from tx.core.dockerimage import Entry, context_hash

    a = [Entry("Dockerfile", data=b"FROM x"), Entry("wheels/a-1.whl", path="/w/a-1.whl", size=10)]
    b = [Entry("Dockerfile", data=b"FROM y"), Entry("wheels/a-1.whl", path="/w/a-1.whl", size=10)]
    assert context_hash(a, {}) == context_hash(list(a), {})
    assert context_hash(a, {}) != context_hash(b, {})
    assert context_hash(a, {}) != context_hash(a, {"BASE_IMAGE": "z"})
    assert context_hash(a, {}, "sha256:1") != context_hash(a, {}, "sha256:2")
