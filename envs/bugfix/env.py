"""`treegym/BugFix-v0`: fix a generated Python repo until its test suite passes.

Grading restores the pristine tests and runner before running them, so an agent that
edits or deletes tests gains nothing; the reward is the fraction of the original tests
that pass against the agent's code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from treegym.records import Task
from treegym.sandbox_env import SandboxConfig, SandboxEnv, describe
from treegym.sandboxes import SandboxError
from treegym.tools import ToolError, tool

from .repos import TESTS, make_repo

RUNNER = "run_tests.py"
RUNNER_SOURCE = (Path(__file__).parent / RUNNER).read_text()
BugKind = Literal[
    "off_by_one", "wrong_operator", "wrong_comparison", "wrong_constant", "missing_edge_case",
    "case_bug", "wrong_call", "swapped_call",
]


class BugFixConfig(SandboxConfig):
    functions: int = Field(4, ge=1, le=9, description="Functions in the generated module.")
    bug_kinds: list[BugKind] | None = Field(None, description="Restrict the kinds of bug.")
    max_turns: int = Field(16, ge=1)


class BugFixEnv(SandboxEnv):
    """Fix the bug that makes a small repo's tests fail."""

    Config = BugFixConfig
    config: BugFixConfig
    description = "Fix a generated repo with bash/read/edit; reward = fraction of tests passing."

    def make_task(self, rng: np.random.Generator, options: dict[str, Any]) -> Task:
        kinds = list(self.config.bug_kinds) if self.config.bug_kinds else None
        return make_repo(rng, self.config.functions, kinds)

    def setup(self, task: Task) -> None:
        for path, text in task.setup["files"].items():
            self.box.write_file(path, text)
        self.box.write_file(RUNNER, RUNNER_SOURCE)

    @tool
    def bash(self, cmd: str) -> str:
        """Run a bash command in the repo directory.

        Args:
            cmd: the command line, e.g. `python3 run_tests.py`.
        """
        return describe(self.box.run(cmd, timeout=self.config.tool_timeout))

    @tool
    def read(self, path: str) -> str:
        """Show a file of the repo.

        Args:
            path: file path relative to the repo root.
        """
        try:
            return self.box.read_file(path).decode("utf-8", errors="replace")
        except SandboxError as exc:
            raise ToolError(str(exc)) from None

    @tool
    def edit(self, path: str, old: str, new: str) -> str:
        """Replace one exact occurrence of `old` with `new` in a file.

        Args:
            path: file path relative to the repo root.
            old: text to replace; must occur exactly once.
            new: the replacement text.
        """
        text = self.read(path)
        count = text.count(old) if old else 0
        if count != 1:
            how = "is empty" if not old else f"occurs {count} times"
            raise ToolError(f"`old` {how} in {path}; copy one exact, unique piece of the file")
        try:
            self.box.write_file(path, text.replace(old, new, 1))
        except SandboxError as exc:
            raise ToolError(str(exc)) from None
        return f"edited {path}"

    def passing(self) -> float:
        """Fraction of the original tests that pass on the current code."""
        task = self.task
        assert task is not None
        self.box.write_file(TESTS, task.setup["files"][TESTS])
        self.box.write_file(RUNNER, RUNNER_SOURCE)
        result = self.box.run(f"python3 {RUNNER} --json {TESTS}", timeout=self.config.tool_timeout)
        try:
            report = json.loads(result.stdout.strip().splitlines()[-1])
            passed = set(report["passed"])
        except (IndexError, KeyError, TypeError, json.JSONDecodeError):
            return 0.0
        return len(passed & set(task.setup["test_ids"])) / len(task.setup["test_ids"])

    def score(self, answer: str) -> float:
        return self.passing()
