"""The README's quick start runs as written."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_quick_start_runs() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL)
    assert blocks, "README has no python quick start"
    scope: dict[str, object] = {}
    exec(compile(blocks[0], str(README), "exec"), scope)  # noqa: S102 - our own README
    env, child = scope["env"], scope["child"]
    # the promise is register, make, step, fork in about 20 lines; a longer one reads as work
    assert len(blocks[0].strip().splitlines()) <= 24
    assert env.total == 2 and child.total == 2
    assert env.turn == 1 and child.turn == 2 and child.history[-1].terminated


def test_sandbox_example_runs() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL)
    exec(compile(blocks[1], str(README), "exec"), {})  # noqa: S102 - our own README
