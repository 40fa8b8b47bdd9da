"""AgentEnv's episode contract: reset/step/fork/close and every bad-input path."""

from __future__ import annotations

import pytest
from helpers import CounterEnv, call

import treegym
from treegym import ConfigError, EpisodeError, ForkError, Task


def test_reset_returns_prompt_task_and_tool_schemas(counter: CounterEnv) -> None:
    obs, info = counter.reset(seed=3)
    assert obs == info["task"].prompt and obs.startswith("Reach ")
    names = [s["function"]["name"] for s in info["tools"]]
    assert names == ["add", "crash", "noise"]
    add = info["tools"][0]["function"]["parameters"]
    assert add["required"] == ["amount"] and add["additionalProperties"] is False


def test_step_runs_calls_in_order_and_reports_them(counter: CounterEnv) -> None:
    obs, reward, terminated, truncated, info = counter.step(
        call("add", amount=2) + " then " + call("add", amount=5, note="x")
    )
    assert obs == "total 2\ntotal 7"
    assert (reward, terminated, truncated) == (0.0, False, False)
    assert [c.arguments for c in info["calls"]] == [{"amount": 2}, {"amount": 5, "note": "x"}]
    assert [r.output for r in info["results"]] == ["total 2", "total 7"]
    assert all(r.ok and r.seconds >= 0 for r in info["results"])
    assert info["parse_error"] is None


def test_answer_ends_the_episode_with_its_score(counter: CounterEnv) -> None:
    target = counter.task.answer
    *_, info = counter.step(call("add", amount=target))
    _, reward, terminated, truncated, info = counter.step(f"<answer> {target} </answer>")
    assert (reward, terminated, truncated) == (1.0, True, False)
    assert info["answer"] == str(target)
    with pytest.raises(EpisodeError, match="episode is over"):
        counter.step(call("add", amount=1))


def test_wrong_answer_scores_zero(counter: CounterEnv) -> None:
    _, reward, terminated, _, _ = counter.step("<answer>-1</answer>")
    assert (reward, terminated) == (0.0, True)


def test_max_turns_truncates(counter: CounterEnv) -> None:
    for turn in range(6):
        _, _, terminated, truncated, _ = counter.step(call("add", amount=1))
        assert not terminated and truncated == (turn == 5)


TOOLS = "add(amount, note=''), crash(), noise(length)"  # every CounterEnv tool, with usage
ADD = "add(amount, note='')"  # what an argument error teaches instead: the valid arguments


@pytest.mark.parametrize(
    ("action", "expected", "hint"),
    [
        ('<tool_call>{"name": "add", "arguments": {"amount": 1}</tool_call>', "not valid JSON",
         TOOLS),
        ("<tool_call>" + "[" * 7000 + "]" * 7000 + "</tool_call>",
         "not valid JSON (nested too deeply", TOOLS),
        ('<tool_call>{"name": "add", "arguments": {"note": ' + "[" * 150 + "]" * 150
         + "}}</tool_call>", "not valid JSON (nested too deeply", TOOLS),
        ('<tool_call>{"name": "add", "arguments": {"amount": ' + "9" * 5000 + "}}</tool_call>",
         "not valid JSON (number too long", TOOLS),
        ('<tool_call>{"name": "add", "arguments": "{\\"amount\\": ' + "9" * 5000 + '}"}'
         "</tool_call>", "arguments are not valid JSON (number too long", TOOLS),
        ("<tool_call>[1, 2]</tool_call>", 'needs a string "name"', TOOLS),
        ('<tool_call>{"name": 3}</tool_call>', 'needs a string "name"', TOOLS),
        ('<tool_call>{"name": "add", "arguments": [1]}</tool_call>', "must be a JSON object",
         TOOLS),
        ('<tool_call>{"name": "add", "arguments": "{oops"}</tool_call>',
         "arguments are not valid", TOOLS),
        ('<tool_call>{"name": "add", "args": {}}</tool_call>', "unexpected keys ['args']", TOOLS),
        ('<tool_call>{"name": "add"', "no closing </tool_call>", TOOLS),
        (call("fly", to="moon"), "unknown tool 'fly'. Available tools: ", TOOLS),
        (call("add"), "missing argument 'amount'. Usage: ", ADD),
        (call("add", amount=1, speed=2), "unexpected argument 'speed'", ADD),
        (call("add", amount="lots"), "argument 'amount': Input should be a valid integer", ADD),
        (call("add", amount=5000), "add failed: amount must be at most 1000", "add"),
        (call("crash"), "crash failed: ZeroDivisionError: division by zero", "crash"),
        ("I think I should add.", "no tool call or answer found", TOOLS),
        ("<answer>1</answer><answer>2</answer>", "2 <answer> blocks", TOOLS),
        ("<answer>1", "<answer> has no closing </answer>", TOOLS),
        ("<answer>...</answer>", "the answer '...' is the placeholder of a format hint", TOOLS),
        ("<answer> … </answer>", "the answer '…' is the placeholder of a format hint", TOOLS),
        ("x" * 20_000, "the action is 20000 characters; the limit is 16000", TOOLS),
        (call("add", amount=1) * 9, "more than 8 tool calls", TOOLS),
    ],
)
def test_bad_actions_become_observations_and_the_episode_goes_on(
    counter: CounterEnv, action: str, expected: str, hint: str
) -> None:
    obs, reward, terminated, truncated, info = counter.step(action)
    assert expected in obs
    assert hint in obs  # the way out: the valid tools, or the valid arguments
    assert (reward, truncated) == (0.0, False)
    assert not terminated
    assert counter.observation_space.contains(obs)
    obs, *_ = counter.step(call("add", amount=1))
    assert obs.startswith("total ")


def test_a_format_hint_copied_back_is_a_format_error_again(counter: CounterEnv) -> None:
    """Hints say the format in words: a model that copies one as its action (as weak models
    do) reads another format error; neither the hint nor its placeholder is scored."""
    hint, *_ = counter.step("I think I should add.")
    for _ in range(3):
        copied, reward, terminated, _, info = counter.step(hint)
        assert (reward, terminated, info["answer"]) == (0.0, False, None)
        assert info["parse_error"] and info["calls"] == []
        hint = copied


def test_bad_call_does_not_stop_the_good_ones(counter: CounterEnv) -> None:
    obs, *_, info = counter.step(call("add", amount="x") + call("add", amount=4))
    assert obs.splitlines()[1] == "total 4"
    assert [r.ok for r in info["results"]] == [False, True]


def test_oversized_action_runs_nothing(counter: CounterEnv) -> None:
    counter.step(call("add", amount=3) + " " * 20_000)
    assert counter.total == 0


def test_control_characters_and_long_output_stay_in_the_observation_space(
    counter: CounterEnv,
) -> None:
    obs, *_ = counter.step(call("noise", length=50_000))
    assert "\x1b" not in obs and "\x00" not in obs
    assert len(obs) == 8_000 and obs.endswith("characters cut]")
    assert counter.observation_space.contains(obs)


def test_step_before_reset_and_after_close_are_clear_errors() -> None:
    env = treegym.make("treegym/Counter-v0")
    with pytest.raises(EpisodeError, match="before reset"):
        env.step("hi")
    env.close()
    env.close()  # idempotent
    with pytest.raises(EpisodeError, match="closed"):
        env.reset()
    with pytest.raises(EpisodeError, match="closed"):
        env.fork()


def test_non_text_action_is_a_type_error(counter: CounterEnv) -> None:
    with pytest.raises(TypeError, match="action is text"):
        counter.step(3)  # type: ignore[arg-type]


def test_bad_options_name_the_problem() -> None:
    with pytest.raises(ConfigError, match=r"unknown option 'max_turn'.*options: max_turns"):
        treegym.make("treegym/Counter-v0", max_turn=3)
    with pytest.raises(ConfigError, match="max_turns: Input should be greater than or equal"):
        treegym.make("treegym/Counter-v0", max_turns=0)
    with pytest.raises(ConfigError, match="render_mode 'human' is not supported"):
        treegym.make("treegym/Counter-v0", render_mode="human")


def test_reset_with_a_given_task_and_a_bad_one(counter: CounterEnv) -> None:
    obs, info = counter.reset(options={"task": {"id": "t", "prompt": "Reach 2.", "answer": 2}})
    assert obs == "Reach 2." and info["task"] == Task(id="t", prompt="Reach 2.", answer=2)
    with pytest.raises(ConfigError, match="is not a Task"):
        counter.reset(options={"task": {"prompt": 3}})


def test_fork_copies_episode_state_and_isolates(counter: CounterEnv) -> None:
    counter.step(call("add", amount=2))
    child = counter.fork()
    assert (child.turn, child.total, child.task) == (1, 2, counter.task)
    child.step(call("add", amount=10))
    assert (counter.total, counter.turn, len(counter.history)) == (2, 1, 1)
    counter.step(call("add", amount=1))
    assert (child.total, child.log, counter.log) == (12, [2, 10], [2, 1])
    child.close()
    counter.step(call("add", amount=1))  # closing a branch leaves the parent alive


def test_fork_of_uncopyable_state_is_a_clear_error(counter: CounterEnv) -> None:
    import threading

    counter.lock = threading.Lock()
    with pytest.raises(ForkError, match="cannot fork CounterEnv.*Sandbox"):
        counter.fork()


class _LooksForkable:
    """Has `fork` and `close`, as the `os` module does, without opting in to Forkable."""

    def __init__(self) -> None:
        self.forks = 0

    def fork(self) -> None:
        self.forks += 1

    def close(self) -> None:
        pass


def test_only_opted_in_state_is_forked_not_whatever_has_a_fork_method(counter: CounterEnv) -> None:
    counter.helper = _LooksForkable()
    child = counter.fork()
    assert counter.helper.forks == 0 and child.helper is not counter.helper  # deep-copied
    counter.library = __import__("os")  # was forked with os.fork(); now a clear error
    with pytest.raises(ForkError, match="cannot fork CounterEnv"):
        counter.fork()
    child.close()


def test_episode_record_matches_what_step_returned(counter: CounterEnv) -> None:
    obs, reward, *_ = counter.step(call("add", amount=4))
    episode = counter.episode()
    assert episode.env_id == "treegym/Counter-v0" and episode.seed == 3
    assert episode.turns[0].observation == obs and episode.turns[0].reward == reward
    assert episode.tools[0]["function"]["name"] == "add"
