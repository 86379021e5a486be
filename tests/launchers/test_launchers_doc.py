"""docs/launchers.md stays true: every command in its ```bash blocks is accepted by tx. Each
`tx run` runs with --dry-run (validated, plan printed, nothing started; the real multi-process
runs are in test_multiprocess.py and test_deepspeed_run.py)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_tx

PAGE = ROOT / "docs" / "launchers.md"


def commands(markdown: str) -> list[list[str]]:
    """Pure: the `tx ...` commands of the ```bash blocks, continuation lines joined."""
    out = []
    for block in re.findall(r"^```bash\n(.*?)^```", markdown, flags=re.S | re.M):
        text = block.replace("\\\n", " ")
        for line in text.splitlines():
            line = line.split(" #", 1)[0].strip()
            if line.startswith("tx "):
                out.append(shlex.split(line)[1:])
    return out


CMDS = commands(PAGE.read_text(encoding="utf-8"))


def test_the_page_has_an_example_per_launcher() -> None:
    used = {argv[argv.index("--launcher") + 1] for argv in CMDS if "--launcher" in argv}
    assert {"torchrun", "deepspeed", "accelerate", "xla", "slurm", "docker"} <= used
    assert any(argv[:2] == ["run", "summarization"] and "--launcher" not in argv for argv in CMDS)  # local


def _is_xla(argv: list[str]) -> bool:
    return "--launcher" in argv and argv[argv.index("--launcher") + 1] == "xla"


@pytest.mark.parametrize("argv", [pytest.param(a, marks=pytest.mark.xla) if _is_xla(a) else a for a in CMDS],
                         ids=[" ".join(a[:4]) for a in CMDS])
def test_command_is_accepted(argv: list[str], tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if _is_xla(argv):  # validated by the interpreter that has torch_xla ("$PY" on the page)
        python = request.getfixturevalue("xla_python")
        argv = [python if a == "$PY" else a for a in argv]
        argv += [] if "--python" in argv else ["--python", python]
    if argv[0] == "run" and "--help" not in argv and "--dry-run" not in argv:
        argv = [*argv, "--dry-run"]
    result = run_tx(*argv, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    if "--dry-run" in argv:
        assert "# plan for launcher" in result.stdout
