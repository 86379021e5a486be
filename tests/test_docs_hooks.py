"""Meta-test: every hook declared in core/hookspecs.py is documented in docs/plugins.md (with
its parameters and an example) and exercised by at least one test under tests/."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from tx.core import hookspecs

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "plugins.md"
HEADING = re.compile(r"^### (tx_\w+)\(([^)]*)\)[ \t]*$", re.MULTILINE)
PYTHON_BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


def declared_hooks() -> dict[str, list[str]]:
    """Hook name -> parameter names, from the hookspec markers pluggy reads."""
    marker = f"{hookspecs.PROJECT}_spec"
    return {
        name: list(inspect.signature(obj).parameters)
        for name, obj in vars(hookspecs).items()
        if callable(obj) and hasattr(obj, marker)
    }


def documented_sections() -> dict[str, tuple[list[str], str]]:
    """Heading `### tx_hook(a, b)` -> (parameters, text up to the next heading)."""
    text = GUIDE.read_text(encoding="utf-8")
    matches = list(HEADING.finditer(text))
    out = {}
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else text.find("\n## ", match.end())
        params = [p.strip() for p in match.group(2).split(",") if p.strip()]
        out[match.group(1)] = (params, text[match.end(): end if end != -1 else len(text)])
    return out


HOOKS = sorted(declared_hooks())


def test_hookspecs_are_found() -> None:
    assert "tx_register_tasks" in HOOKS and len(HOOKS) >= 4


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_documented_with_parameters_return_and_example(hook: str) -> None:
    sections = documented_sections()
    assert hook in sections, f"{hook} has no `### {hook}(...)` section in docs/plugins.md"
    params, body = sections[hook]
    assert params == declared_hooks()[hook], f"docs/plugins.md shows {hook}({', '.join(params)})"
    for param in params:
        assert f"`{param}` -" in body, f"parameter {param!r} of {hook} is not described"
    if not params:
        assert "No parameters." in body
    assert re.search(r"\b[Rr]eturn", body), f"the return value of {hook} is not described"
    examples = PYTHON_BLOCK.findall(body)
    assert any("@hookimpl" in code and f"def {hook}(" in code for code in examples), f"{hook} has no example"


def test_no_documented_hook_is_stale() -> None:
    stale = sorted(set(documented_sections()) - set(HOOKS))
    assert not stale, f"docs/plugins.md documents hooks that core/hookspecs.py does not declare: {stale}"


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_mentioned_by_a_test(hook: str) -> None:
    here = Path(__file__).resolve()
    testers = [
        path for path in (ROOT / "tests").rglob("*.py")
        if path.resolve() != here and hook in path.read_text(encoding="utf-8", errors="replace")
    ]
    assert testers, f"no test file under tests/ mentions {hook}; write a test that exercises it"


def test_guide_examples_are_valid_python() -> None:
    blocks = PYTHON_BLOCK.findall(GUIDE.read_text(encoding="utf-8"))
    assert blocks
    for code in blocks:
        compile(code, str(GUIDE), "exec")
