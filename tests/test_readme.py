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


def _block(marker: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL)
    found = [b for b in blocks if marker in b]
    assert len(found) == 1, f"README has {len(found)} python blocks with {marker!r}"
    return found[0]


def test_sandbox_example_runs() -> None:
    exec(compile(_block("open_sandbox"), str(README), "exec"), {})  # noqa: S102 - our README


def test_registering_a_reasoning_gym_dataset_runs() -> None:
    import gymnasium

    scope: dict[str, object] = {}
    exec(compile(_block("register_reasoning_gym"), str(README), "exec"), scope)  # noqa: S102
    try:
        scope["env"].reset(seed=0)
        assert scope["env_id"] == "treegym/RG-word_sorting-v0"
    finally:
        scope["env"].close()
        del gymnasium.registry[scope["env_id"]]


def test_sandboxed_task_runs() -> None:
    """The second example: files from `setup`, a code tool, a reward read from the world,
    and a fork whose writes its parent never sees, over several seeds."""
    import gymnasium

    scope: dict[str, object] = {}
    try:
        exec(compile(_block("PythonSandboxEnv"), str(README), "exec"), scope)  # noqa: S102
        assert scope["rewards"] == {0: (1.0, 0.0), 1: (1.0, 0.0), 2: (1.0, 0.0)}
        texts = set()
        env = scope["make"]("mylab/WordCount-v0")
        try:
            for seed in (0, 1, 2):
                env.reset(seed=seed)
                texts.add(env.box.read_file("notes.txt"))
        finally:
            env.close()
        assert len(texts) > 1, "every seed placed the same file"
    finally:
        gymnasium.registry.pop("mylab/WordCount-v0", None)
