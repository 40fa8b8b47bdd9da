"""BugFix-v0: every generated bug is caught by its suite, fixes earn full reward, and
tampering with the tests earns nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import call

import treegym
from treegym.envs.bugfix.env import RUNNER_SOURCE
from treegym.envs.bugfix.repos import POOL, module_text, suite_text


def _run_suite(tmp: Path, module: str) -> dict[str, list[str]]:
    (tmp / "lib.py").write_text(module)
    (tmp / "test_lib.py").write_text(suite_text(POOL))
    (tmp / "run_tests.py").write_text(RUNNER_SOURCE)
    out = subprocess.run([sys.executable, "run_tests.py", "--json"], cwd=tmp,
                         capture_output=True, text=True, timeout=60)
    return json.loads(out.stdout.splitlines()[-1])


def test_the_suite_passes_the_fixed_code_and_catches_every_bug(tmp_path: Path) -> None:
    fixed = module_text(POOL)
    assert _run_suite(tmp_path, fixed)["failed"] == []
    for fn in POOL:
        for bug in fn.bugs:
            assert fixed.count(bug.old) == 1, f"{fn.name}/{bug.kind} is ambiguous"
            report = _run_suite(tmp_path, fixed.replace(bug.old, bug.new, 1))
            assert report["failed"], f"{fn.name}/{bug.kind} is not caught by the tests"
            assert all(f"test_{fn.name}_" in line for line in report["failed"])


@pytest.fixture
def bugfix() -> treegym.AgentEnv:
    env = treegym.make("treegym/BugFix-v0", bug_kinds=["off_by_one"])
    env.reset(seed=5)
    yield env
    env.close()


def test_fixing_the_bug_earns_one(bugfix: treegym.AgentEnv) -> None:
    task = bugfix.task
    assert task.metadata["kind"] == "off_by_one"
    obs, *_ = bugfix.step(call("bash", cmd="python3 run_tests.py"))
    assert "failed" in obs and "[exit code 1]" in obs
    broken = bugfix.box.read_file("lib.py").decode()
    old, new = next((b.new, b.old) for f in POOL if f.name == task.metadata["function"]
                    for b in f.bugs if b.kind == "off_by_one")
    assert old in broken
    obs, *_ = bugfix.step(call("edit", path="lib.py", old=old, new=new))
    assert obs == "edited lib.py"
    obs, *_ = bugfix.step(call("bash", cmd="python3 run_tests.py"))
    assert obs.endswith(" passed, 0 failed")
    _, reward, terminated, _, _ = bugfix.step("<answer>done</answer>")
    assert reward == 1.0 and terminated


def test_tampering_with_the_tests_earns_nothing(bugfix: treegym.AgentEnv) -> None:
    bugfix.step(call("bash", cmd="rm test_lib.py && echo 'def test_ok(): pass' > test_x.py"))
    _, reward, *_ = bugfix.step("<answer>done</answer>")
    assert reward < 1.0


def test_edit_and_read_errors_are_observations(bugfix: treegym.AgentEnv) -> None:
    obs, *_ = bugfix.step(call("edit", path="lib.py", old="no such text", new="x"))
    assert "`old` occurs 0 times in lib.py" in obs
    obs, *_ = bugfix.step(call("edit", path="lib.py", old="def", new="x"))
    assert "occurs" in obs and "times in lib.py" in obs
    obs, *_ = bugfix.step(call("read", path="missing.py"))
    assert obs.startswith("read failed: ")


def test_a_fork_carries_edits_and_siblings_stay_apart(bugfix: treegym.AgentEnv) -> None:
    bugfix.step(call("bash", cmd="echo trunk > notes.txt"))
    child = bugfix.fork()
    try:
        child.step(call("bash", cmd="echo child >> notes.txt"))
        bugfix.step(call("bash", cmd="echo parent >> notes.txt"))
        assert child.box.read_file("notes.txt") == b"trunk\nchild\n"
        assert bugfix.box.read_file("notes.txt") == b"trunk\nparent\n"
    finally:
        child.close()


def test_docker_backed_env_forks_files(docker_client: object) -> None:
    env = treegym.make("treegym/BugFix-v0", sandbox="docker", bug_kinds=["off_by_one"])
    try:
        env.reset(seed=5)
        assert env.box.capabilities.backend == "docker"
        env.step(call("bash", cmd="echo trunk > notes.txt"))
        child = env.fork()
        try:
            child.step(call("bash", cmd="echo child >> notes.txt"))
            assert env.box.read_file("notes.txt") == b"trunk\n"
            assert child.box.read_file("notes.txt") == b"trunk\nchild\n"
            assert 0.0 < child.passing() < 1.0
        finally:
            child.close()
    finally:
        env.close()
