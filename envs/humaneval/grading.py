"""Grading one answer: the judge (judge.py) runs in a sandbox, and only its keyed line counts.

The caller hands in the sandbox, and the env opens a fresh one per answer: the episode's
own sandbox has run the agent's code, which may have changed anything in it. The key is
new for each grading and goes only to the judge, which hides it from the answer.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from pydantic import BaseModel, ValidationError

from treegym.sandbox_env import describe
from treegym.sandboxes import ExecResult, Sandbox

from .problems import Problem

JUDGE_SOURCE = (Path(__file__).parent / "judge.py").read_text()
# `exec`: the judge replaces bash, so no process the answer can reach holds this stdout.
COMMAND = "exec python3 -I -S judge.py"


class Verdict(BaseModel):
    """Whether `check()` passed, and a line saying why, for the model to read."""

    passed: bool
    reason: str


def grade(box: Sandbox, problem: Problem, source: str, timeout: float) -> Verdict:
    """Run the problem's check on `source` (see answers.py) in `box`, within `timeout` s."""
    key = secrets.token_hex(16)
    job = {"key": key, "entry_point": problem.entry_point, "prompt": problem.prompt,
           "test": problem.test}
    box.write_file("judge.py", JUDGE_SOURCE)
    box.write_file("problem.py", problem.prompt)
    box.write_file("answer.py", source)
    box.write_file("job.json", json.dumps(job))
    return read_verdict(box.run(COMMAND, timeout=timeout), key, timeout)


def read_verdict(result: ExecResult, key: str, timeout: float) -> Verdict:
    """The judge's verdict if it gave one, else why the run ended without one."""
    for line in result.stdout.splitlines():
        if line.startswith(f"{key} "):
            try:
                return Verdict.model_validate_json(line[len(key) + 1:])
            except ValidationError:
                break
    if result.timed_out:
        why = f"timed out: check() did not finish within {timeout:g} s"
    elif result.limit:
        why = f"stopped by the sandbox's {result.limit} limit"
    else:
        why = f"the judge gave no verdict: {describe(result)[-500:]}"
    return Verdict(passed=False, reason=f"failed: {why}")
