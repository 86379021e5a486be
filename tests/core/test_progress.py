"""The Trainer's progress bar reaches the console under the local launcher, and reads cleanly.

`tx` runs on a real pseudo-terminal (sized like a terminal window: tqdm draws nothing on a
0-column pty), and the raw bytes are checked: a bar that counts up to the last step, each
redraw a well-formed bar, and the logged metrics on lines of their own, not inside a bar.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from tests.conftest import SMALL_SUMMARIZATION, read_json

COLUMNS, ROWS = 120, 40
BAR = re.compile(r"^\s*(\d{1,3})%\|[^|]*\| (\d+)/(\d+) \[[^\]]*\]\s*$")
#: any tqdm bar, with or without a description ("Loading weights: 40%|...")
ANY_BAR = re.compile(r"^(?:[^|%\r\n]*: )?\s*\d{1,3}%\|[^|]*\| \d+/\d+ \[[^\]]*\]\s*$")


def run_on_pty(argv: list[str], cwd: Path, timeout: float = 600) -> tuple[int, str]:
    """Run argv with stdin/stdout/stderr on a new pty of COLUMNS x ROWS; return (code, raw text)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
    env = dict(os.environ, TERM="xterm", COLUMNS=str(COLUMNS))
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: every writer closed the pty
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        else:
            proc.kill()
            pytest.fail(f"`{' '.join(argv)}` did not finish in {timeout}s")
    finally:
        os.close(master)
    return proc.wait(timeout=60), b"".join(chunks).decode("utf-8", errors="replace")


def training_bar_frames(text: str, total: int) -> list[tuple[int, int]]:
    """(percent, done) of every redraw of the bar whose total is ``total``."""
    frames = []
    for segment in re.split(r"[\r\n]", text):
        match = BAR.match(segment)
        if match and int(match.group(3)) == total:
            frames.append((int(match.group(1)), int(match.group(2))))
    return frames


@pytest.mark.train
def test_progress_bar_on_a_terminal_under_the_local_launcher(tmp_path: Path) -> None:
    out = tmp_path / "run"
    flags = [f for f in SMALL_SUMMARIZATION if f not in ("--disable_tqdm", "true")]
    argv = [sys.executable, "-m", "tx.core.cli", "run", "summarization", *flags,
            "--launcher", "local", "--logging_steps", "1", "--max_eval_samples", "8", "--max_predict_samples", "8",
            "--generation_max_length", "8", "--output_dir", str(out)]
    code, text = run_on_pty(argv, tmp_path)
    assert code == 0, text[-4000:]

    steps = read_json(out / "trainer_state.json")["global_step"]
    assert steps >= 4
    frames = training_bar_frames(text, steps)
    assert frames, f"no progress bar with total {steps} on the terminal:\n{text[-4000:]}"
    done = [d for _, d in frames]
    assert done == sorted(done) and done[-1] == steps and frames[-1][0] == 100, frames
    assert len(set(done)) >= 2, frames  # it moved while training, not one final print

    # every logged loss is on its own line (tqdm.write), never spliced into a bar redraw
    losses = [segment for segment in re.split(r"[\r\n]", text) if "'loss'" in segment]
    assert len(losses) == steps, losses
    assert all(segment.lstrip().startswith("{") and "%|" not in segment for segment in losses), losses
    # no text spliced into a bar (e.g. a warning printed while a bar is drawn), no bar wider
    # than the terminal
    segments = re.split(r"[\r\n]", text)
    spliced = [seg for seg in segments if "%|" in seg and not ANY_BAR.match(seg)]
    assert not spliced, spliced
    assert all(len(seg) <= COLUMNS for seg in segments if "%|" in seg)
    assert "tx: finished in" in text
    assert not (out / "runs").exists()  # --report_to none: no TensorBoard files
