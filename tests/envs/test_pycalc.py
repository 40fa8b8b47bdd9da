"""PyCalc-v0: exact grading, persistent interpreter state, and forks that carry it."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import call

import treegym
from treegym.envs.pycalc.tasks import GENERATORS, normalise


@pytest.mark.parametrize("kind", list(GENERATORS))
def test_each_kind_is_solvable_in_the_sandbox(kind: str) -> None:
    env = treegym.make("treegym/PyCalc-v0", kinds=[kind])
    try:
        _, info = env.reset(seed=1)
        task = info["task"]
        assert task.metadata["kind"] == kind
        if "files" in task.setup:
            obs, *_ = env.step(call("python", code="print(open('sales.csv').read())"))
            assert obs.startswith("region,product,units,price")
        _, reward, terminated, _, _ = env.step(f"<answer>{task.answer}</answer>")
        assert (reward, terminated) == (1.0, True)
    finally:
        env.close()


def test_answers_are_exact_after_normalising() -> None:
    assert normalise(" 12,345. ") == normalise("12345") == "12345"
    assert normalise('"Plum"') == "plum"
    assert normalise("12345.0") != "12345"
    rng = np.random.default_rng(0)
    task = GENERATORS["arithmetic"](rng)
    assert str(int(task.answer)) == task.answer


def test_interpreter_state_persists_and_forks() -> None:
    env = treegym.make("treegym/PyCalc-v0", kinds=["arithmetic"])
    try:
        env.reset(seed=0)
        env.step(call("python", code="x = 41\nimport math"))
        child = env.fork()
        try:
            env.step(call("python", code="x += 1"))
            obs_child, *_ = child.step(call("python", code="print(x, math.pi > 3)"))
            obs_parent, *_ = env.step(call("python", code="print(x)"))
            assert (obs_child, obs_parent) == ("41 True", "42")
        finally:
            child.close()
    finally:
        env.close()


def test_errors_in_model_code_are_observations() -> None:
    env = treegym.make("treegym/PyCalc-v0", tool_timeout=2)
    try:
        env.reset(seed=0)
        obs, reward, terminated, *_ = env.step(call("python", code="1/0"))
        assert "ZeroDivisionError" in obs and not terminated and reward == 0.0
        obs, *_ = env.step(call("python", code="while True: pass"))
        assert "timed out" in obs or "limit" in obs
        obs, *_ = env.step(call("python", code="print('still alive')"))
        assert obs == "still alive"
    finally:
        env.close()


def test_close_and_garbage_collection_leave_no_workers() -> None:
    import gc
    import os

    from treegym.sandboxes.local import worker_processes

    before = set(worker_processes(ancestor=os.getpid()))
    env = treegym.make("treegym/PyCalc-v0")
    env.reset(seed=0)
    child = env.fork()
    env.reset(seed=1)  # a reset replaces the sandbox; the old one must go
    assert len(set(worker_processes(ancestor=os.getpid())) - before) >= 2
    env.close()
    del child
    gc.collect()
    assert set(worker_processes(ancestor=os.getpid())) <= before


def test_fenced_python_blocks_run_as_python_calls() -> None:
    """CodeAct-style actions: each ```python block is a python(code) call, in order, with
    the interpreter state they share; a real <tool_call> or the option turns it off."""
    env = treegym.make("treegym/PyCalc-v0")
    off = treegym.make("treegym/PyCalc-v0", code_blocks_as_calls=False)
    try:
        env.reset(seed=0)
        action = "First:\n```python\nx = 6\n```\nthen\n```py\nprint(x * 7)\n```\n"
        obs, _, _, _, info = env.step(action)
        assert obs == "[no output]\n42"
        assert [c.name for c in info["calls"]] == ["python", "python"]
        both = call("python", code="print('called')") + "\n```python\nprint('fenced')\n```"
        assert env.step(both)[0] == "called"
        off.reset(seed=0)
        assert off.step(action)[0].startswith("no tool call or answer found")
    finally:
        env.close()
        off.close()
