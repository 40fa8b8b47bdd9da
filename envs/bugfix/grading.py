"""BugFix's grading job: the agent's module, checked by the task's pristine suite.

Only the module's text leaves the agent's sandbox; the suite comes from the Task, so
nothing else the agent wrote (a planted `json.py`, a patched runner, edited tests, a
startup hook) is where the tests run. The judge (treegym.grading) runs the module in
a process of its own and the suite's test functions in the judge, calling the module's
functions across a pipe: the module can neither print a verdict, nor end the run early
to look like a pass, nor reach the assertions, and a value that only pretends to be
equal is refused.
"""

from __future__ import annotations

import ast

from treegym.grading import Job, Source
from treegym.records import Task

from .repos import MODULE, TESTS


def job_for(task: Task, module_text: str) -> Job:
    """The judge's job: one test per id the task lists, each a call of its test function."""
    suite = task.setup["files"][TESTS]
    module = MODULE.removesuffix(".py")
    return Job(files={MODULE: module_text}, module=module, functions=imported(suite, module),
               suite=Source(path=TESTS, text=suite),
               tests={test: f"{test.split('::', 1)[1]}()" for test in task.setup["test_ids"]})


def imported(suite: str, module: str) -> list[str]:
    """The names the suite imports from the module: the functions its tests call."""
    return [alias.name for node in ast.walk(ast.parse(suite))
            if isinstance(node, ast.ImportFrom) and node.module == module
            for alias in node.names]
