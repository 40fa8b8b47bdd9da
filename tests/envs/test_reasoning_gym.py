"""reasoning-gym as a task source: seeded tasks, the dataset's own scorer, a python tool,
one-call registration, and errors that name the dataset meant."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import gymnasium
import pytest
from helpers import call

import treegym
from treegym import ConfigError, Task
from treegym.envs.reasoning_gym import ReasoningGymEnv, env_id, register_reasoning_gym, score_task

DEFAULTS = ["basic_arithmetic", "chain_sum", "countdown", "leg_counting", "mini_sudoku"]
TWO_ONE_DIGIT_TERMS = {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1}


@pytest.fixture
def registered() -> Iterator[list[str]]:
    """Ids a test registers, removed afterwards so other tests see the usual registry."""
    ids: list[str] = []
    yield ids
    for env in ids:
        gymnasium.registry.pop(env, None)


@pytest.mark.parametrize("dataset", DEFAULTS)
def test_each_default_dataset_asks_and_scores_by_its_own_rules(dataset: str) -> None:
    env = treegym.make(env_id(dataset))
    try:
        obs, info = env.reset(seed=0)
        task = info["task"]
        entry = task.metadata["entry"]
        assert obs.startswith(entry["question"].rstrip()) and obs.endswith(
            "Give your final answer between <answer> and </answer>.")
        assert task.answer == entry["answer"] and task.metadata["dataset"] == dataset
        child = env.fork()
        try:
            _, gold, terminated, *_ = child.step(f"<answer>{task.answer}</answer>")
            assert (gold, terminated) == (1.0, True)
        finally:
            child.close()
        _, wrong, terminated, *_ = env.step("<answer>0</answer>")
        assert 0.0 <= wrong < 1.0 and terminated
    finally:
        env.close()


@pytest.mark.parametrize("dataset", DEFAULTS)
def test_a_seed_gives_the_same_task_and_another_seed_a_new_one(dataset: str) -> None:
    env = treegym.make(env_id(dataset))
    try:
        first, again, other = (env.reset(seed=s)[1]["task"] for s in (7, 7, 8))
        assert (first.prompt, first.answer) == (again.prompt, again.answer)
        assert first.prompt != other.prompt
        start = time.perf_counter()
        for _ in range(10):
            env.make_task(env.np_random, {})
        assert time.perf_counter() - start < 3.0  # one-item datasets: milliseconds each
    finally:
        env.close()


def test_chain_sum_takes_its_dataset_config_from_make() -> None:
    env = treegym.make(env_id("chain_sum"), dataset_config=TWO_ONE_DIGIT_TERMS, max_turns=2)
    try:
        for seed in range(5):
            meta = env.reset(seed=seed)[1]["task"].metadata["entry"]["metadata"]
            assert (meta["num_terms"], meta["num_digits"]) == (2, 1)
        assert env.config.max_turns == 2
    finally:
        env.close()


def test_the_python_tool_keeps_its_state_and_the_answer_is_scored() -> None:
    env = treegym.make(env_id("chain_sum"), dataset_config=TWO_ONE_DIGIT_TERMS)
    try:
        _, info = env.reset(seed=3)
        expression = info["task"].metadata["entry"]["metadata"]["expression"]
        obs, reward, terminated, *_ = env.step(call("python", code=f"x = {expression}"))
        assert (obs, reward, terminated) == ("[no output]", 0.0, False)
        obs, *_ = env.step(call("python", code="print(x)"))
        assert obs == info["task"].answer
        assert env.step(f"<answer>{obs}</answer>")[1] == 1.0
    finally:
        env.close()


def test_a_task_record_is_enough_to_rescore_and_replay() -> None:
    env = treegym.make(env_id("mini_sudoku"))
    try:
        task = env.reset(seed=2)[1]["task"]
        record = Task.model_validate_json(task.model_dump_json())
        assert score_task(record, record.answer) == 1.0 and score_task(record, "1 2") < 1.0
        other = treegym.make(env_id("chain_sum"))  # the record, not the env, names the dataset
        try:
            obs, _ = other.reset(options={"task": record})
            assert obs == task.prompt
            assert other.step(f"<answer>{task.answer}</answer>")[1] == 1.0
        finally:
            other.close()
    finally:
        env.close()


def test_another_dataset_registers_in_one_call(registered: list[str]) -> None:
    words = register_reasoning_gym("word_sorting", min_words=3, max_words=3)
    named = register_reasoning_gym("word_sorting", id="treegym/Words-v0", max_words=4)
    registered += [words, named]
    assert (words, named) == ("treegym/RG-word_sorting-v0", "treegym/Words-v0")
    assert treegym.env_info(words).tools == ["python"]
    env = treegym.make(words)
    try:
        task = env.reset(seed=0)[1]["task"]
        assert task.metadata["entry"]["metadata"]["num_words"] == 3
        assert env.step(f"<answer>{task.answer}</answer>")[1] == 1.0
    finally:
        env.close()


def test_an_unknown_dataset_names_the_closest_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown reasoning-gym dataset 'chain_sun'\. "
                                          r"Did you mean chain_sum"):
        register_reasoning_gym("chain_sun")
    assert env_id("chain_sun") not in gymnasium.registry
    with pytest.raises(ConfigError, match="Did you mean leg_counting"):
        treegym.make(env_id("chain_sum"), dataset="leg_countin")
    with pytest.raises(ConfigError, match=r"No name is close\. All \d+: "):
        ReasoningGymEnv(dataset="xyzzy")


def test_a_bad_dataset_config_lists_the_real_fields() -> None:
    with pytest.raises(ConfigError, match=r"unexpected keyword argument 'max_term'.*\(fields: "
                                          r"min_terms, max_terms, min_digits, max_digits"):
        treegym.make(env_id("chain_sum"), dataset_config={"max_term": 2})
    with pytest.raises(ConfigError, match="min_terms must be positive"):
        register_reasoning_gym("chain_sum", min_terms=0)
    with pytest.raises(ConfigError, match="can't set seed"):
        treegym.make(env_id("chain_sum"), dataset_config={"seed": 1})


def test_without_reasoning_gym_the_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "reasoning_gym", None)  # makes `import` fail
    with pytest.raises(ConfigError, match=r"pip install 'treegym\[tasks\]'") as caught:
        treegym.make(env_id("chain_sum"))
    assert "\n" not in str(caught.value)


def test_importing_treegym_does_not_import_reasoning_gym() -> None:
    script = ("import sys, treegym\n"
              "treegym.env_info('treegym/RG-chain_sum-v0')\n"
              "print('reasoning_gym' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"


def test_an_answer_that_would_run_code_on_the_host_scores_zero(tmp_path) -> None:
    """countdown's scorer evaluates answers with sympy's parse_expr (Python eval); an
    answer that calls a function must never reach it."""
    import treegym

    marker = tmp_path / "pwned"
    env = treegym.make("treegym/RG-countdown-v0")
    try:
        env.reset(seed=0)
        attack = f'<answer>__import__("os").system("touch {marker}")</answer>'
        assert env.step(attack)[1] == 0.0
        env.reset(seed=0)
        plain = '<answer>exec(bytes([112,114,105,110,116]))</answer>'
        assert env.step(plain)[1] == 0.0
    finally:
        env.close()
    assert not marker.exists()
