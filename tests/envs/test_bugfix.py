"""BugFix-v0: every generated bug is caught by its suite, fixes earn full reward, and
tampering with the tests earns nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import call

import treegym
from treegym.envs.bugfix.env import RUNNER_SOURCE
from treegym.envs.bugfix.repos import POOL, module_text, suite_text
from treegym.sandboxes.local import worker_processes


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


# -- reward integrity: nothing but the fix raises the reward ---------------------------
# Each attack below keeps the bug and tries to make the grader count failing tests as
# passed. The old grader ran the suite in the agent's own sandbox and trusted the last
# JSON line of stdout, so every one of them earned 1.0.
FAKE_RUNNER = """\
import json, re
names = re.findall(r"^def (test_\\w+)", open("test_lib.py").read(), re.M)
print(json.dumps({"passed": ["test_lib.py::" + n for n in names], "failed": []}))
"""
PLANTED_JSON = """\
def dumps(report):
    ids = report["passed"] + [line.split(": ", 1)[0] for line in report["failed"]]
    return '{"passed": [%s], "failed": []}' % ", ".join('"%s"' % i for i in ids)
"""
# installed as usercustomize, which every `python3` runs before it reads its script
SWAP_RUNNER = """\
import shutil, sys
if sys.argv[0].endswith("run_tests.py"):
    shutil.copy("fake_runner.py", "run_tests.py")
"""
EMPTY_TESTS = """\
import re, sys
if sys.argv[0].endswith("run_tests.py"):
    names = re.findall(r"^def (test_\\w+)", open("test_lib.py").read(), re.M)
    open("test_lib.py", "w").write("".join(f"def {n}():\\n    pass\\n" for n in names))
"""
FAKE_AT_IMPORT = """\
import os, re
names = re.findall(r"^def (test_\\w+)", open("test_lib.py").read(), re.M)
ids = ", ".join('"test_lib.py::%s"' % n for n in names)
print('{"passed": [%s], "failed": []}' % ids, flush=True)
os._exit(0)
"""
PATCH_JSON = """\
import json
_dumps = json.dumps
json.dumps = lambda r: _dumps({"passed": r["passed"] + [f.split(": ", 1)[0]
                                                      for f in r["failed"]], "failed": []})
"""
ALWAYS_EQUAL = """\

class _Same:
    def __eq__(self, other):
        return True

for _name in [n for n, f in list(globals().items()) if callable(f) and not n.startswith("_")]:
    globals()[_name] = lambda *args, **kwargs: _Same()
"""


def _write(env: treegym.AgentEnv, path: str, text: str) -> None:
    """Write a file the way an agent would: through its bash tool."""
    obs, *_ = env.step(call("bash", cmd=f"mkdir -p \"$(dirname {path})\" && "
                                        f"cat > {path} <<'EOF'\n{text}EOF\n"))
    assert obs == "[no output]", obs


def _usercustomize(env: treegym.AgentEnv) -> str:
    obs, *_ = env.step(call("bash", cmd="python3 -c 'import site; "
                                        "print(site.getusersitepackages())'"))
    return f"{obs.strip()}/usercustomize.py"


def _reward(env: treegym.AgentEnv) -> float:
    _, reward, terminated, _, _ = env.step("<answer>done</answer>")
    assert terminated
    return reward


def test_a_planted_json_module_does_not_raise_the_reward(bugfix: treegym.AgentEnv) -> None:
    baseline = bugfix.passing()
    _write(bugfix, "json.py", PLANTED_JSON)
    assert 0.0 < baseline < 1.0 and _reward(bugfix) <= baseline


@pytest.mark.parametrize("plant", ["runner", "tests"])
def test_a_patched_runner_or_edited_tests_do_not_raise_the_reward(
    bugfix: treegym.AgentEnv, plant: str
) -> None:
    baseline = bugfix.passing()
    _write(bugfix, "fake_runner.py", FAKE_RUNNER)
    _write(bugfix, "run_tests.py", FAKE_RUNNER)
    _write(bugfix, "test_lib.py", "def test_ok():\n    pass\n")
    _write(bugfix, _usercustomize(bugfix), SWAP_RUNNER if plant == "runner" else EMPTY_TESTS)
    obs, *_ = bugfix.step(call("bash", cmd="python3 run_tests.py --json"))
    assert obs.startswith('{"passed": ["test_lib.py::test_ok"]')  # the agent's own run is fooled
    assert _reward(bugfix) <= baseline


@pytest.mark.parametrize("code", [FAKE_AT_IMPORT, PATCH_JSON, ALWAYS_EQUAL],
                         ids=["print-and-exit", "patch-json", "always-equal"])
def test_a_module_that_fakes_a_pass_does_not_raise_the_reward(
    bugfix: treegym.AgentEnv, code: str
) -> None:
    baseline = bugfix.passing()
    broken = bugfix.box.read_file("lib.py").decode()
    _write(bugfix, "lib.py", code + broken if code != ALWAYS_EQUAL else broken + code)
    assert _reward(bugfix) <= baseline


@pytest.mark.parametrize("seed", range(4))
def test_the_true_fix_earns_one_in_a_branch_and_grading_leaves_no_sandbox(seed: int) -> None:
    env = treegym.make("treegym/BugFix-v0", functions=9)
    try:
        env.reset(seed=seed)
        # counted, not compared: the env's own worker hands over to a new one after a fork
        workers = len(worker_processes(os.getpid(), inits=False))
        baseline = env.passing()
        branch = env.fork()
        try:
            _write(branch, "lib.py", env.task.answer)
            assert 0.0 < baseline < 1.0 and _reward(branch) == 1.0
            assert env.passing() == baseline
        finally:
            branch.close()
        assert len(worker_processes(os.getpid(), inits=False)) == workers
    finally:
        env.close()
