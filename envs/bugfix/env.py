"""`treegym/BugFix-v0`: fix a generated Python repo until its test suite passes.

The reward is the fraction of the original tests that pass against the agent's code.
`run_tests.py` in the repo is for the agent; grading never runs it, nor anything else in
the episode's sandbox: it copies only `lib.py` into a fresh sandbox, where the judge runs
the task's pristine tests on it (grading.py), so editing the tests or the runner, or
planting modules next to them, earns nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from treegym.grading import judge
from treegym.records import Task
from treegym.sandbox_env import SandboxConfig, SandboxEnv, describe
from treegym.sandboxes import SandboxError
from treegym.tools import ToolError, tool

from .grading import job_for
from .repos import MODULE, make_repo

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
        """Fraction of the original tests that pass on the current `lib.py`."""
        task = self.task
        assert task is not None
        try:
            module = self.box.read_file(MODULE).decode("utf-8", errors="replace")
        except SandboxError:
            return 0.0
        verdicts = judge(self.config, job_for(task, module), self.config.tool_timeout)
        return sum(v.passed for v in verdicts.values()) / len(verdicts)

    def score(self, answer: str) -> float:
        return self.passing()
