"""`tx env` (a block to paste into bug reports, shaped like `accelerate env`) and the
machine-dependent default it reports: `report_to` is tensorboard when tensorboard is installed,
else none, resolved at `tx run` and written into the job spec."""

from __future__ import annotations

import re
import socket
import sys
import threading
import time
from importlib import metadata
from importlib.util import find_spec
from pathlib import Path

import pytest
import yaml

from tests.conftest import run_tx
from tx.core import defaults, envinfo, jobspec, plugins, run
from tx.core.errors import ConfigError

LINE = re.compile(r"^- (?P<key>[^:]+): (?P<value>.+)$")
REQUIRED = ("tx version", "tx location", "Platform", "Python version", "Python executable", "torch version",
            "transformers version", "CPU cores", "System RAM", "Accelerators", "PyTorch CUDA available",
            "PyTorch MPS available", "PyTorch threads", "Default report_to", "tx cache", "tx job records",
            "HF home", "accelerate config", "Hub access", "Plugin autoload", "Plugins")


def parse_env(stdout: str) -> dict[str, str]:
    lines = stdout.rstrip("\n").splitlines()
    assert lines[0] == "Copy-and-paste the text below in your GitHub issue" and lines[1] == ""
    info: dict[str, str] = {}
    for line in lines[2:]:
        match = LINE.match(line)
        assert match, f"not a '- key: value' line: {line!r}"
        assert match["key"] not in info, f"duplicate key {match['key']!r}"
        info[match["key"]] = match["value"]
    return info


@pytest.fixture(scope="module")
def env_info() -> dict[str, str]:
    result = run_tx("env")
    assert result.returncode == 0, result.stderr
    return parse_env(result.stdout)


def test_env_block_shape(env_info: dict[str, str]) -> None:
    missing = [k for k in REQUIRED if k not in env_info]
    assert not missing, missing


def test_env_values_are_this_machine(env_info: dict[str, str]) -> None:
    import os
    import sys

    for dist in ("torch", "transformers", "datasets", "tensorboard"):
        assert env_info[f"{dist} version"] == metadata.version(dist)
    assert env_info["Python executable"] == sys.executable
    assert env_info["CPU cores"] == str(os.cpu_count())
    assert env_info["tx cache"].startswith(os.environ["TX_CACHE_HOME"])  # the session's, from conftest
    assert env_info["Hub access"].startswith("offline (HF_HUB_OFFLINE")
    assert env_info["Plugin autoload"] == "on"
    assert re.fullmatch(r"\d+ \(OMP_NUM_THREADS=\S+\)", env_info["PyTorch threads"])
    assert env_info["PyTorch CUDA available"].split()[0] in ("True", "False")


def test_env_says_which_report_to_is_the_default(env_info: dict[str, str]) -> None:
    expected = "tensorboard" if find_spec("tensorboard") else "none"
    assert env_info["Default report_to"].split()[0] == expected


def test_env_lists_every_launcher_and_plugin(env_info: dict[str, str]) -> None:
    loaded = plugins.load()
    for launcher in loaded.launchers:
        assert env_info[f"launcher {launcher.name}"] == "usable" or \
            env_info[f"launcher {launcher.name}"].startswith("not usable: ")
    for name in loaded.infos:
        assert f"{name} (" in env_info["Plugins"]


def test_env_shows_plugin_autoload_off() -> None:
    result = run_tx("env", env={"TX_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert result.returncode == 0, result.stderr
    assert parse_env(result.stdout)["Plugin autoload"].startswith("off")


# -- measured, not inferred: the Hub and the launchers' engines ----------------------------------
ONLINE_ENV = {name: "" for name in envinfo.OFFLINE_VARIABLES}  # the offline variables unset


def test_hub_access_is_probed_when_no_offline_variable_is_set() -> None:
    started = time.monotonic()
    result = run_tx("env", env=ONLINE_ENV)
    took = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    # this machine has no route to the Hub: the probe says so instead of "online"
    assert parse_env(result.stdout)["Hub access"].startswith("unreachable (https://huggingface.co"), result.stdout
    assert took < 60


def serve(handler_body: bytes | None) -> tuple[socket.socket, str]:
    """A real endpoint on loopback: answers every request with ``handler_body`` as an HTTP 200,
    or never answers (None: connections are accepted by the kernel and left waiting)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    if handler_body is not None:
        def answer() -> None:
            while True:
                try:
                    conn, _ = server.accept()
                except OSError:
                    return
                with conn:
                    conn.recv(65536)
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(handler_body))
        threading.Thread(target=answer, daemon=True).start()
    return server, f"http://127.0.0.1:{server.getsockname()[1]}"


def test_hub_probe_online_when_the_endpoint_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    server, url = serve(b"ok")
    with server:
        for name in envinfo.OFFLINE_VARIABLES:
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HF_ENDPOINT", url)
        assert envinfo.hub_access().startswith(f"online ({url} answered HTTP 200")
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # nothing will try the Hub then: no probe
        assert envinfo.hub_access() == "offline (HF_HUB_OFFLINE=1)"


def test_hub_probe_gives_up_within_its_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    server, url = serve(None)  # connects, never answers
    with server:
        for name in envinfo.OFFLINE_VARIABLES:
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HF_ENDPOINT", url)
        started = time.monotonic()
        state = envinfo.hub_access(timeout=1.0)
        took = time.monotonic() - started
    assert state == f"unreachable (no answer from {url} within 1 s)"
    assert took < 2.5


def test_launchers_are_usable_only_when_their_engine_answers(tmp_path: Path) -> None:
    """Slurm pointed at a controller that is not running, Docker at a socket with no daemon: the
    client tools are installed here, so only asking the engines can tell they are not usable."""
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # a port nobody listens on
    conf = tmp_path / "slurm.conf"
    conf.write_text(f"ClusterName=txprobe\nSlurmctldHost=localhost(127.0.0.1)\nSlurmctldPort={port}\n"
                    "NodeName=localhost CPUs=1 State=UNKNOWN\nPartitionName=debug Nodes=localhost Default=YES State=UP\n")
    env = {"SLURM_CONF": str(conf), "DOCKER_HOST": f"unix://{tmp_path / 'no-daemon.sock'}"}
    result = run_tx("env", env=env)
    assert result.returncode == 0, result.stderr
    info = parse_env(result.stdout)
    assert info["launcher slurm"].startswith("not usable: "), info["launcher slurm"]
    assert info["launcher docker"].startswith("not usable: "), info["launcher docker"]
    loaded = plugins.load()
    if loaded.launchers.get("slurm").unavailable_reason() is None:  # sbatch installed: the controller decided
        assert "the Slurm controller does not answer" in info["launcher slurm"]
    if loaded.launchers.get("docker").unavailable_reason() is None:
        assert "the Docker daemon does not answer" in info["launcher docker"]


def test_command_problem_says_why_a_probe_failed() -> None:
    from tx.core.launcher import command_problem

    assert command_problem([sys.executable, "-c", "pass"], timeout=30) is None
    said = command_problem([sys.executable, "-c", "import sys; sys.exit('controller is DOWN')"], timeout=30)
    assert said is not None and "exit 1" in said and "controller is DOWN" in said
    assert command_problem(["tx-no-such-program"], timeout=5) == "tx-no-such-program is not on PATH"
    started = time.monotonic()
    slow = command_problem([sys.executable, "-c", "import time; time.sleep(30)"], timeout=1)
    assert slow is not None and "did not answer within 1 s" in slow and time.monotonic() - started < 10


# -- the report_to default ---------------------------------------------------------------------
def resolve(tmp_path: Path, *argv: str) -> run.Resolved:
    flags = run.split_tx_flags(["summarization", "--output_dir", str(tmp_path / "out"), *argv])
    return run.resolve(plugins.load(), flags, cwd=tmp_path)


def hide_tensorboard(monkeypatch: pytest.MonkeyPatch) -> None:
    real = defaults.find_spec
    monkeypatch.setattr(defaults, "find_spec",
                        lambda name, *a: None if name in ("tensorboard", "tensorboardX") else real(name, *a))


def test_report_to_default_follows_what_is_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert find_spec("tensorboard") is not None  # the test extra installs it
    assert resolve(tmp_path).job.args["report_to"] == "tensorboard"
    hide_tensorboard(monkeypatch)
    assert defaults.default_report_to() == "none"
    assert resolve(tmp_path).job.args["report_to"] == "none"  # written even though it is HF's default


def test_report_to_flag_and_config_file_win_over_the_default(tmp_path: Path) -> None:
    assert resolve(tmp_path, "--report_to", "none").job.args["report_to"] == "none"
    config = tmp_path / "job.yaml"
    config.write_text(yaml.safe_dump({"report_to": "none", "learning_rate": 0.01}))
    assert resolve(tmp_path, "--config", str(config)).job.args["report_to"] == "none"


def test_rerun_keeps_the_report_to_of_the_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as patch:
        hide_tensorboard(patch)  # made on a machine without tensorboard
        path = jobspec.write(resolve(tmp_path).job)
    again = run.resolve(plugins.load(), run.split_tx_flags(["--from", str(path), "--overwrite_output_dir"]), cwd=tmp_path)
    assert again.job.args["report_to"] == "none"  # rerun here, with tensorboard: the job's choice holds


def test_tensorboard_asked_for_but_missing_fails_before_launch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = jobspec.write(resolve(tmp_path).job)  # report_to: tensorboard
    hide_tensorboard(monkeypatch)
    with pytest.raises(ConfigError, match="needs the tensorboard package") as caught:
        resolve(tmp_path, "--report_to", "tensorboard")
    assert "--report_to none" in caught.value.one_line()
    with pytest.raises(ConfigError, match="needs the tensorboard package"):
        run.resolve(plugins.load(), run.split_tx_flags(["--from", str(path), "--overwrite_output_dir"]), cwd=tmp_path)
    flags = run.split_tx_flags(["--from", str(path), "--overwrite_output_dir", "--report_to", "none"])
    assert run.resolve(plugins.load(), flags, cwd=tmp_path).job.args["report_to"] == "none"


def test_dry_run_shows_report_to_in_the_job_spec(tmp_path: Path) -> None:
    result = run_tx("run", "summarization", "--dry-run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    spec = yaml.safe_load(result.stdout.split("# plan for launcher")[0])
    assert spec["args"]["report_to"] == defaults.default_report_to()
