"""Grading an answer with tests it cannot reach: the judge (judge.py) runs them in a sandbox.

An env describes what to grade as a `Job`: the answer's files, the functions the tests
call, and the trusted tests themselves. `judge(config, job, timeout)` runs it in a fresh
sandbox of the env's backend and limits, never the episode's own: the agent's tool calls
may have changed anything there (planted modules, a patched runner, edited tests, a
startup hook). Only the answer's files travel; the tests go in the job, which the judge
deletes before any answer code runs. The key is new for each grading and goes only to
the judge, so the one line that counts is one the answer cannot print; without it every
test fails. See judge.py for why the answer cannot reach the judge.
"""

from __future__ import annotations

import json
import secrets
import sys
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError, field_validator

from treegym.sandbox_env import SandboxConfig, describe
from treegym.sandboxes import ExecResult, Sandbox, SandboxError, open_sandbox

JUDGE = "judge.py"
JUDGE_SOURCE = (Path(__file__).parent / JUDGE).read_text()
JOB = "job.json"
# `exec`: the judge replaces bash, so no process the answer can reach holds this stdout.
COMMAND = f"exec python3 -I -S {JUDGE}"


class Source(BaseModel):
    """Trusted code the judge runs, and the file name its tracebacks give."""

    path: str
    text: str


class Job(BaseModel):
    """One grading: an answer's files, and tests that call its functions by name."""

    files: dict[str, str] = Field(description="The answer, path -> text: run in this order, "
                                              "as one module, in the answer's process only.")
    module: str = Field(description="That module's name; the tests may import from it.")
    functions: list[str] = Field(min_length=1, description="What the tests call.")
    prelude: list[Source] = Field(default_factory=list, description=(
        "Trusted code the tests' namespace runs first, e.g. helpers the tests rely on; "
        "the answer's functions then replace any of the same name."))
    suite: Source = Field(description="The tests: defines what the test calls use.")
    tests: dict[str, str] = Field(min_length=1, description=(
        "Test id -> the call that runs it, e.g. `check(f)`; a test passes if it returns."))
    what: str = Field("the tests", description="What a timeout reason calls them.")

    @field_validator("files")
    @classmethod
    def _not_the_judges(cls, files: dict[str, str]) -> dict[str, str]:
        if {JUDGE, JOB} & set(files):
            raise ValueError(f"an answer's file cannot be named {JUDGE} or {JOB}")
        return files

    @field_validator("module")
    @classmethod
    def _not_a_module_the_judge_uses(cls, module: str) -> str:
        if not module.isidentifier() or module in sys.stdlib_module_names:
            raise ValueError(f"{module!r} is not a free module name")
        return module


class Verdict(BaseModel):
    """Whether one test passed, and a line saying why, for the model to read."""

    passed: bool
    reason: str


class Report(BaseModel):
    results: dict[str, Verdict]


def judge(config: SandboxConfig, job: Job, timeout: float) -> dict[str, Verdict]:
    """Every test's verdict, from a fresh sandbox of `config`'s backend, closed afterwards."""
    try:
        with open_sandbox(config.sandbox, **config.sandbox_options) as box:
            return judge_in(box, job, timeout)
    except SandboxError as exc:
        return failed(job, f"the answer could not be graded: {exc}")


def judge_in(box: Sandbox, job: Job, timeout: float) -> dict[str, Verdict]:
    """Every test's verdict, judged in `box` within `timeout` s; `box` must hold no agent work."""
    key = secrets.token_hex(16)
    box.write_file(JUDGE, JUDGE_SOURCE)
    for path, text in job.files.items():
        box.write_file(path, text)
    box.write_file(JOB, json.dumps({**job.model_dump(), "key": key}))
    return read_verdicts(box.run(COMMAND, timeout=timeout), key, job, timeout)


def read_verdicts(result: ExecResult, key: str, job: Job, timeout: float) -> dict[str, Verdict]:
    """The judge's verdicts if its keyed line holds them, else why the run gave none."""
    for line in result.stdout.splitlines():
        if line.startswith(f"{key} "):
            try:
                report = Report.model_validate_json(line[len(key) + 1:])
            except ValidationError:
                break
            no_verdict = Verdict(passed=False, reason="failed: the judge gave no verdict on it")
            return {test: report.results.get(test, no_verdict) for test in job.tests}
    if result.timed_out:
        why = f"timed out: {job.what} did not finish within {timeout:g} s"
    elif result.limit:
        why = f"stopped by the sandbox's {result.limit} limit"
    else:
        why = f"the judge gave no verdict: {describe(result)[-500:]}"
    return failed(job, why)


def failed(job: Job, why: str) -> dict[str, Verdict]:
    return {test: Verdict(passed=False, reason=f"failed: {why}") for test in job.tests}


__all__ = ["Job", "Source", "Verdict", "judge", "judge_in", "read_verdicts"]
