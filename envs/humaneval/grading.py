"""HumanEval's grading job: the answer's function, checked by the problem's own `check()`.

The judge (treegym.grading) runs the prompt then the answer in the answer's process, and
the prompt then the test in its own, so `check()` and any helper it relies on (the `poly`
of HumanEval/32) are the prompt's, never the answer's: only the entry point is called
across, and only plain values come back.
"""

from __future__ import annotations

from treegym.grading import Job, Source, Verdict, judge_in
from treegym.sandboxes import Sandbox

from .problems import Problem

CHECK = "check"


def job_for(problem: Problem, source: str) -> Job:
    """The judge's job for `source` (see answers.py): one test, `check(<entry point>)`."""
    name = problem.entry_point
    return Job(files={"problem.py": problem.prompt, "answer.py": source}, module="answer",
               functions=[name], prelude=[Source(path="problem.py", text=problem.prompt)],
               suite=Source(path="test.py", text=problem.test),
               tests={CHECK: f"check({name})"}, what="check()")


def grade(box: Sandbox, problem: Problem, source: str, timeout: float) -> Verdict:
    """Run the problem's check on `source` in `box`, a sandbox that holds no agent work."""
    return judge_in(box, job_for(problem, source), timeout)[CHECK]
