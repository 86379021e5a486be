"""tx.core.process.run_group, which every process launcher's launch() uses: exit codes, signal
forwarding and no orphans, with a stand-in launch tool whose workers live in sessions of their
own, like torchrun's (fake_launch_tool.py). Fast: no torch. The real multi-process runs are in
test_multiprocess.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tx.core.launchtool import failure_code, free_port, substitute
from tx.core.process import parse_token, watch_parent, watch_token, WATCH_ENV

from tests.conftest import alive, descendants

FAKE = Path(__file__).with_name("fake_launch_tool.py")



def start(tmp_path: Path, tool_mode: str, worker_mode: str, grace: float = 30) -> subprocess.Popen[str]:
    """`tx` stand-in: a Python process that runs the fake tool through run_group."""
    code = ("import sys; from tx.core.process import run_group; "
            f"sys.exit(run_group([sys.executable, {str(FAKE)!r}, {tool_mode!r}, {worker_mode!r}, {str(tmp_path)!r}]))")
    proc = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "TX_STOP_GRACE": str(grace)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (tmp_path / "ready").exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the fake tool never started its workers"
        time.sleep(0.05)
    return proc


def workers(tmp_path: Path) -> dict[int, list[int]]:
    """worker pid -> signals it received."""
    out = {}
    for f in tmp_path.glob("worker-*"):
        out[int(f.name.split("-")[1])] = [int(x) for x in f.read_text().split()]
    assert len(out) == 2
    return out


def finish(proc: subprocess.Popen[str], timeout: float = 60) -> int:
    proc.communicate(timeout=timeout)
    return proc.returncode


def test_exit_code_of_the_tool_is_the_exit_code(tmp_path: Path) -> None:
    proc = start(tmp_path, "exit:7", "obedient")
    assert finish(proc) == 7
    # the tool is gone and so are the workers it left behind in their own sessions
    assert not [pid for pid in workers(tmp_path) if alive(pid)]


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_stop_signal_reaches_every_worker_once_and_says_interrupted(tmp_path: Path, sig: int, code: int) -> None:
    proc = start(tmp_path, "forward", "obedient")
    pids = list(workers(tmp_path))
    proc.send_signal(sig)
    assert finish(proc) == code
    got = workers(tmp_path)
    assert all(got[pid] == [sig] for pid in pids), got  # once: a second SIGINT would mean "stop now"
    assert not [pid for pid in pids if alive(pid)]


def test_workers_left_behind_by_a_dying_tool_get_the_signal_it_did_not_pass_on(tmp_path: Path) -> None:
    proc = start(tmp_path, "die", "obedient", grace=60)
    pids = list(workers(tmp_path))
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert finish(proc) == 143
    assert time.monotonic() - started < 15  # they stopped by themselves, long before the grace
    assert all(sigs == [signal.SIGTERM] for sigs in workers(tmp_path).values())
    assert not [pid for pid in pids if alive(pid)]


def test_workers_left_behind_by_a_dying_tool_get_the_grace_then_are_killed(tmp_path: Path) -> None:
    proc = start(tmp_path, "die", "stubborn", grace=2)
    pids = list(workers(tmp_path))
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert finish(proc) == 143
    assert time.monotonic() - started < 15
    assert not [pid for pid in pids if alive(pid)], "orphaned workers outlived tx"


def test_a_second_stop_signal_kills_everything_at_once(tmp_path: Path) -> None:
    proc = start(tmp_path, "forward", "stubborn", grace=120)
    pids = list(workers(tmp_path))
    proc.send_signal(signal.SIGTERM)
    time.sleep(1)
    assert proc.poll() is None and all(alive(p) for p in pids)  # stubborn workers, long grace: still there
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    assert finish(proc) == 143  # the first signal decides the code
    assert time.monotonic() - started < 10
    assert not [pid for pid in pids if alive(pid)]


def test_sigusr1_reaches_every_worker_and_the_job_goes_on(tmp_path: Path) -> None:
    proc = start(tmp_path, "forward", "obedient")
    proc.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 20
    while not all(sigs == [signal.SIGUSR1] for sigs in workers(tmp_path).values()):
        assert time.monotonic() < deadline, workers(tmp_path)
        time.sleep(0.1)
    assert proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    assert finish(proc) == 143


def test_launch_tool_helpers() -> None:
    port = free_port()
    assert 0 < port < 65536
    assert substitute(["--master_port={free_port}", "x"], port) == [f"--master_port={port}", "x"]
    fail = type("Failure", (), {})
    f0, f1 = fail(), fail()
    f0.exitcode, f1.exitcode = 2, -9
    assert failure_code({1: f1, 0: f0}) == (0, 2, 2)  # rank 0's code when it failed
    assert failure_code({3: f1}) == (3, 137, -9)  # killed by SIGKILL


def test_launchtool_gives_the_workers_exit_code_and_no_traceback(tmp_path: Path) -> None:
    """A tool that fails the way torchrun does when a worker exits 2 (ChildFailedError): the
    command exits 2, quietly; a free port was put in place of {free_port}."""
    pkg = tmp_path / "faketool.py"
    pkg.write_text(
        "import sys\n"
        "class ChildFailedError(Exception):\n"
        "    def __init__(self, failures):\n"
        "        super().__init__('FAILED'); self.failures = failures\n"
        "class F:\n"
        "    exitcode = 2\n"
        "print('args', sys.argv[1:], flush=True)\n"
        "raise ChildFailedError({0: F(), 1: F()})\n")
    done = subprocess.run([sys.executable, "-m", "tx.core.launchtool", "faketool", "--port={free_port}"],
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(tmp_path)},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    port = done.stdout.split("--port=")[1].split("'")[0]
    assert port.isdigit() and int(port) > 0


def test_kill_9_of_tx_stops_the_tool_and_its_workers_at_once(tmp_path: Path) -> None:
    """SIGKILL leaves `tx` no time to stop anything: the tool and the workers (in sessions of
    their own, like torchrun's) see it die and stop themselves (watch_parent)."""
    proc = start(tmp_path, "forward", "stubborn", grace=120)
    job = descendants(proc.pid)
    assert set(workers(tmp_path)) <= job and len(job) >= 3  # the tool and its two workers
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 5
    while [pid for pid in job if alive(pid)] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in job if alive(pid)], "processes of the job outlived kill -9 of tx"


def test_a_process_started_after_tx_died_stops_at_once(tmp_path: Path) -> None:
    """`tx` killed before a worker even started its watch: the worker stops as soon as it does."""
    gone = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    token = watch_token(gone.pid)
    gone.kill()
    gone.wait()
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", "from tx.core.process import watch_parent; import time; "
                           "watch_parent(); time.sleep(30); print('trained on')"],
                          env={**os.environ, WATCH_ENV: token}, capture_output=True, text=True, timeout=60)
    assert done.returncode == -signal.SIGKILL and "trained on" not in done.stdout, done
    assert time.monotonic() - started < 20
    assert "is gone; stopping the job" in done.stderr


def test_watch_tokens() -> None:
    token = watch_token()
    assert token is not None
    machine, pid, start = parse_token(token)
    assert pid == os.getpid() and start > 0 and machine
    assert parse_token("") is None and parse_token("x:y:z") is None
    # another machine or container: its pids are not ours, nothing is watched
    assert watch_parent({WATCH_ENV: f"other-boot/1:{pid}:{start}"}) is False
    assert watch_parent({}) is False
