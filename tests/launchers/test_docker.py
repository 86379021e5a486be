"""`tx docker build` and `--launcher docker` against the real Docker engine of this machine.

The session starts dockerd with scripts/docker-engine.sh (no bridge, no registry), builds the CPU
image FROM tx-base:bookworm with a wheelhouse made on the host, and runs real tx jobs in it.
The wheelhouse and the image are reused between sessions: the wheelhouse lives in the machine's
cache (keyed by the requirements and the host's package versions), and `tx docker build` skips a
build whose context hash matches the image's label.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.conftest import ROOT, SMALL_SUMMARIZATION, assert_one_line_error, read_json, run_tx

pytestmark = pytest.mark.docker

IMAGE = "tx-test:cpu"
BASE = "tx-base:bookworm"
UID = GID = 1000  # the tests run as root: the containers run as this user
FAKE_TOKEN = "hf_" "txDockerFakeToken0123456789abcdef"
PASSED_VALUE = "passed-through-value-42"
CACHE_ROOT = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tx" / "docker"


def _engine(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(ROOT / "scripts" / "docker-engine.sh"), *args],
                          capture_output=True, text=True, timeout=1800)


@pytest.fixture(scope="session")
def client() -> Any:
    """dockerd up and tx-base:bookworm present, or the session fails."""
    for step in ("up", "base-image"):
        result = _engine(step)
        assert result.returncode == 0, f"scripts/docker-engine.sh {step} failed:\n{result.stderr[-3000:]}"
    import docker

    engine = docker.from_env(timeout=300)
    assert engine.ping()
    return engine


def _host_pins() -> list[str]:
    pins = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name and name.lower() != "tx-train":
            pins[name.lower()] = f"{name}=={dist.version}"
    return [pins[k] for k in sorted(pins)]


@pytest.fixture(scope="session")
def wheelhouse(client: Any) -> Path:
    """Wheels of tx's requirements at the host's versions (cp311, what tx-base runs), cached."""
    from filelock import FileLock

    from tx.core.dockerimage import requirements

    reqs = requirements()
    pins = _host_pins()  # every package at the host's version, so the image runs what the host runs
    # keyed on tx's requirements and the host's versions of them: packages other work installs on
    # this machine do not invalidate the cache (a new wheelhouse means a new dependency layer)
    direct = {re.split(r"[<>=!~ ;\[]", r, maxsplit=1)[0].lower().replace("_", "-") for r in reqs}
    direct_pins = [p for p in pins if p.split("==")[0].lower().replace("_", "-") in direct]
    key = hashlib.sha256("\n".join([*reqs, *direct_pins, sys.version[:4]]).encode()).hexdigest()[:12]
    target = CACHE_ROOT / f"wheelhouse-{key}"
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    with FileLock(str(CACHE_ROOT / ".wheelhouse.lock")):
        if (target / ".complete").exists():
            return target
        tmp = CACHE_ROOT / f".wheelhouse-{key}.{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        (tmp / "constraints.txt").write_text("\n".join(pins) + "\n")
        result = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check", "-w", str(tmp),
             "-c", str(tmp / "constraints.txt"), *reqs],
            capture_output=True, text=True, timeout=1800,
        )
        assert result.returncode == 0, f"pip wheel failed:\n{result.stderr[-3000:]}"
        (tmp / ".complete").write_text("ok\n")
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
        for old in CACHE_ROOT.glob("wheelhouse-*"):  # superseded wheelhouses are only disk
            if old != target:
                shutil.rmtree(old, ignore_errors=True)
    return target


@pytest.fixture(scope="session")
def image(client: Any, wheelhouse: Path) -> Any:
    """The CPU image, built through `tx docker build` (a no-op when it is up to date)."""
    import docker

    try:
        previous = client.images.get(IMAGE).id
    except docker.errors.ImageNotFound:
        previous = None
    result = run_tx("docker", "build", "--cpu", "--tag", IMAGE, "--base-image", BASE, "--wheelhouse", str(wheelhouse),
                    timeout=3600)
    assert result.returncode == 0, f"tx docker build failed:\n{result.stdout[-4000:]}\n{result.stderr[-2000:]}"
    built = client.images.get(IMAGE)
    if previous and previous != built.id and not client.images.get(previous).tags:
        try:  # the image this build replaced (its layers stay in the build cache)
            client.images.remove(previous)
        except docker.errors.APIError:  # still used by a container
            pass
    return built


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, client: Any) -> Iterator[dict[str, Any]]:
    """A user's world owned by uid 1000: run directories, tx cache, HF cache. Containers made
    under it are removed at the end."""
    base = tmp_path_factory.mktemp("docker-user")
    for sub in ("runs", "tx-cache", "hf-home"):
        (base / sub).mkdir()
    for path in (base, base / "runs", base / "tx-cache", base / "hf-home"):
        os.chown(path, UID, GID)
    env = {"TX_CACHE_HOME": str(base / "tx-cache"), "HF_HOME": str(base / "hf-home"), "TX_STOP_GRACE": "5"}
    yield {"base": base, "runs": base / "runs", "env": env}
    for container in client.containers.list(all=True, filters={"label": "tx.launcher=docker"}):
        if container.labels.get("tx.output-dir", "").startswith(str(base)):
            container.remove(force=True)


def docker_run_args(out: Path, *extra: str) -> list[str]:
    return ["run", "summarization", "--launcher", "docker", "--image", IMAGE, "--user", f"{UID}:{GID}",
            "--network", "none", "--output_dir", str(out), *SMALL_SUMMARIZATION, *extra]


def job_id_of(out: Path) -> str:
    from tx.core import jobspec

    return jobspec.read(out).job_id


def container_of(client: Any, job_id: str) -> Any:
    found = client.containers.list(all=True, filters={"label": f"tx.job-id={job_id}"})
    assert len(found) == 1, f"expected one container for {job_id}, found {len(found)}"
    return found[0]


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def status_row(job_id: str, env: dict[str, str]) -> tuple[str, int | None]:
    result = run_tx("status", job_id, env=env)
    assert result.returncode == 0, result.stderr
    m = re.search(rf"^{re.escape(job_id)}\s+docker\s+\S+\s+([A-Z]+)(?: \((\d+)\))?", result.stdout, re.MULTILINE)
    assert m, result.stdout
    return m.group(1), int(m.group(2)) if m.group(2) else None


# -- the image -------------------------------------------------------------------------------------
def test_image_is_layered_non_root_and_runs_tx(image: Any, client: Any) -> None:
    config = image.attrs["Config"]
    assert config["User"] == "tx"
    assert config["Entrypoint"] == ["tx"]
    assert re.fullmatch(r"[0-9a-f]{16}", config["Labels"]["tx.context-hash"])
    assert config["Labels"]["tx.variant"] == "cpu"
    layers = [h for h in image.history() if h["Size"] > 0]  # newest first
    venv = next(i for i, h in enumerate(layers) if "COPY dir:" in h["CreatedBy"] and h["Size"] > 300e6)
    # everything above the dependencies (tx itself) is small, so a code change rebuilds little
    assert all(h["Size"] < 20e6 for h in layers[:venv]), [(h["CreatedBy"][:60], h["Size"]) for h in layers]
    # the wheelhouse is not in the image: only base + venv are big
    assert sum(h["Size"] for h in layers) < client.images.get(BASE).attrs["Size"] + layers[venv]["Size"] + 20e6
    out = client.containers.run(IMAGE, ["--version"], network_mode="none", remove=True)
    assert out.decode().strip() == f"tx {metadata.version('tx-train')}"


def test_build_again_is_a_no_op(image: Any, wheelhouse: Path) -> None:
    args = ("docker", "build", "--cpu", "--tag", IMAGE, "--base-image", BASE, "--wheelhouse", str(wheelhouse))
    # the first call rebuilds only if tx's files changed since the session's build (a shared
    # checkout being edited); a code change reuses the cached dependency layers
    first = run_tx(*args, timeout=1800)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr
    if "up to date" not in first.stdout:  # rebuilt: the dependency layers came from the cache
        deps_step = first.stdout.split("Step 6/")[1].split("Step 7/")[0]
        assert "Using cache" in deps_step, deps_step[-2000:]
    again = run_tx(*args)
    assert again.returncode == 0, again.stderr
    assert f"image {IMAGE} is up to date" in again.stdout


# -- running jobs ------------------------------------------------------------------------------------
def test_training_job_in_a_container(image: Any, client: Any, home: dict[str, Any]) -> None:
    out = home["runs"] / "train"
    env = {**home["env"], "TX_DOCKER_TEST_VAR": PASSED_VALUE}
    result = run_tx(*docker_run_args(out, "--token", FAKE_TOKEN, "--env", "TX_DOCKER_TEST_VAR"), env=env, timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "train_loss" in result.stdout  # streamed live from the container

    # outputs on the host, owned by the container's user
    results = read_json(out / "all_results.json")
    for key in ("train_loss", "eval_loss", "eval_rougeL", "predict_rougeL"):
        assert key in results, results
    assert results["train_samples"] == 64 and results["eval_samples"] == 16
    assert len((out / "generated_predictions.txt").read_text().splitlines()) == 16
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()
    owners = {(p.stat().st_uid, p.stat().st_gid) for p in [out, *out.rglob("*")]}
    assert owners == {(UID, GID)}, owners
    # the built-in model was built in the container, into the user's tx cache
    assert any((home["base"] / "tx-cache" / "models").iterdir())

    # the container saw container paths only
    cjob = (out / "tx-job.docker.yaml").read_text()
    assert "output_dir: /tx/output" in cjob and "/tx/inputs/train_file/train.jsonl" in cjob
    assert str(out) not in cjob.split("\n", 1)[1]  # (the comment line names the host job file)

    job = job_id_of(out)
    assert status_row(job, home["env"]) == ("COMPLETED", None)
    logs = run_tx("logs", job, env=home["env"])
    assert logs.returncode == 0 and "train_loss" in logs.stdout and "tx: finished" in logs.stdout
    record = read_json(home["base"] / "tx-cache" / "jobs" / f"{job}.json")
    container = container_of(client, job)
    assert record["scheduler_id"] == container.id
    labels = container.labels
    assert (labels["tx.job-id"], labels["tx.task"], labels["tx.launcher"]) == (job, "summarization", "docker")
    assert container.attrs["Config"]["User"] == f"{UID}:{GID}"
    assert container.attrs["HostConfig"]["NetworkMode"] == "none"

    # secrets: runtime environment only
    runtime_env = container.attrs["Config"]["Env"]
    assert f"HF_TOKEN={FAKE_TOKEN}" in runtime_env and f"TX_DOCKER_TEST_VAR={PASSED_VALUE}" in runtime_env
    places = {
        "image": json.dumps(image.attrs),
        "image history": json.dumps(image.history()),
        "container labels": json.dumps(labels),
        "job file": (out / "tx-job.yaml").read_text(),
        "container job file": cjob,
        "job record": json.dumps(record),
        "container logs": container.logs().decode(errors="replace"),
        "tx output": result.stdout + result.stderr,
    }
    for where, text in places.items():
        assert FAKE_TOKEN not in text, f"the token leaked into the {where}"
        assert PASSED_VALUE not in text, f"the --env value leaked into the {where}"
    for path in out.rglob("*"):
        if path.is_file() and path.stat().st_size < 5_000_000:
            assert FAKE_TOKEN.encode() not in path.read_bytes(), path


def test_torchrun_inside_the_container(image: Any, client: Any, home: dict[str, Any]) -> None:
    """--inner torchrun: the container's command is the torchrun launcher's plan; its two
    processes meet on the container's loopback (no network)."""
    out = home["runs"] / "torchrun"
    result = run_tx(*docker_run_args(out, "--inner", "torchrun", "--inner-option", "nproc-per-node=2",
                                     "--do_eval", "false", "--do_predict", "false"), env=home["env"], timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    container = container_of(client, job_id_of(out))
    assert container.attrs["Config"]["Entrypoint"] == ["python"]
    assert "torch.distributed.run" in container.attrs["Config"]["Cmd"]
    # 64 samples, 16 per device, 2 processes: 2 optimizer steps (one process would take 4)
    assert read_json(out / "trainer_state.json")["global_step"] == 2
    assert read_json(out / "train_results.json")["train_samples"] == 64


def test_dead_containers_show_failed_with_exit_code(image: Any, client: Any, home: dict[str, Any], tmp_path: Path) -> None:
    # 1) killed by the kernel: out of memory
    oom = home["runs"] / "oom"
    result = run_tx(*docker_run_args(oom, "--memory", "128m", "--detach"), env=home["env"])
    assert result.returncode == 0, result.stderr
    # the submit screen: job id, container, where outputs go, how to follow it
    assert f"submitted {job_id_of(oom)} to docker (container " in result.stdout, result.stdout
    assert "outputs" in result.stdout and f"tx logs -f {job_id_of(oom)}" in result.stdout
    # 2) the worker itself fails: a plugin given with -p exists on the host but not in the image
    (tmp_path / "tx_host_only_plugin.py").write_text('"""A plugin module installed on the host only."""\n')
    missing = home["runs"] / "missing-plugin"
    env = {**home["env"], "PYTHONPATH": str(tmp_path)}
    result = run_tx("-p", "tx_host_only_plugin", *docker_run_args(missing, "--detach"), env=env)
    assert result.returncode == 0, result.stderr

    jobs = {"oom": job_id_of(oom), "plugin": job_id_of(missing)}
    containers = {k: container_of(client, j) for k, j in jobs.items()}

    def ended() -> bool:
        for c in containers.values():
            c.reload()
        return all(c.status == "exited" for c in containers.values())

    wait_until(ended, 600, "both containers to exit")
    assert containers["oom"].attrs["State"]["OOMKilled"] is True
    assert status_row(jobs["oom"], home["env"]) == ("FAILED", 137)
    assert status_row(jobs["plugin"], home["env"]) == ("FAILED", 2)
    logs = run_tx("logs", "-f", jobs["plugin"], env=home["env"], timeout=120)  # -f on an ended job returns
    assert logs.returncode == 0
    assert "tx: error: plugin module 'tx_host_only_plugin'" in logs.stdout, logs.stdout
    assert run_tx("logs", jobs["oom"], env=home["env"]).returncode == 0  # still readable


def test_cancel_a_running_container(image: Any, client: Any, home: dict[str, Any]) -> None:
    out = home["runs"] / "cancel"
    args = docker_run_args(out, "--detach")
    args[args.index("--num_train_epochs") + 1] = "500"
    result = run_tx(*args, env=home["env"])
    assert result.returncode == 0, result.stderr
    job = job_id_of(out)
    container = container_of(client, job)
    assert status_row(job, home["env"])[0] == "RUNNING"
    cancelled = run_tx("cancel", job, env=home["env"], timeout=120)
    assert cancelled.returncode == 0, cancelled.stderr
    assert f"cancelled job {job}" in cancelled.stdout
    container.reload()
    assert container.status == "exited"
    assert status_row(job, home["env"])[0] == "CANCELLED"
    again = run_tx("cancel", job, env=home["env"])
    assert again.returncode == 0 and "already ended (CANCELLED)" in again.stdout
    assert run_tx("logs", job, env=home["env"]).returncode == 0


def test_ctrl_c_stops_the_container(image: Any, client: Any, home: dict[str, Any]) -> None:
    out = home["runs"] / "interrupt"
    args = docker_run_args(out)
    args[args.index("--num_train_epochs") + 1] = "500"
    proc = subprocess.Popen([sys.executable, "-m", "tx.core.cli", *args], env={**os.environ, **home["env"]},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def running() -> bool:
            found = client.containers.list(filters={"label": f"tx.output-dir={out}", "status": "running"})
            return bool(found)

        wait_until(running, 300, "the container to run")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert "tx: stopping container" in err
    job = job_id_of(out)
    container = container_of(client, job)
    assert container.status == "exited"
    assert status_row(job, home["env"])[0] == "CANCELLED"


def test_missing_image_is_one_clear_line(client: Any, home: dict[str, Any]) -> None:
    out = home["runs"] / "no-image"
    args = docker_run_args(out)
    args[args.index(IMAGE)] = "tx-test:does-not-exist"
    result = run_tx(*args, env=home["env"])
    assert_one_line_error(result, "image 'tx-test:does-not-exist' not found", "tx docker build")
