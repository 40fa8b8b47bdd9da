"""What a long rollout shows while it runs: a bound on trees in flight (so early trees
finish and stream), progress before any tree is done, and a refusal to start when the
prompt hides the env's tools from the model."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import call

import treegym
from treegym.envs.maze import MazeEnv
from treegym.errors import ConfigError
from treegym.policy import MenuPolicy, SamplingParams, load_tokenizer, make_policy, tiny_path
from treegym.rollout import ChainSampler, TreeSampler, collect
from treegym.rollout.collect import check_tools_rendered

pytest.importorskip("transformers", reason="rollouts need the torch extra for the tokenizer")

SHORT = {"params": SamplingParams(max_tokens=4, seed=0), "env_kwargs": {"max_turns": 2}}


class StartCountingMaze(MazeEnv):
    """Maze that logs "start" at every reset; `collect` resets exactly once per tree."""

    events: list[str] = []

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        StartCountingMaze.events.append("start")
        return super().reset(seed=seed, options=options)


treegym.register("treegym/StartCountingMaze-v0", entry_point=StartCountingMaze)


@pytest.fixture(scope="module")
def tiny() -> object:
    policy = make_policy("tiny")
    yield policy
    policy.close()


def peak_in_flight(events: list[str]) -> int:
    live = peak = 0
    for event in events:
        live += 1 if event == "start" else -1
        peak = max(peak, live)
    return peak


@pytest.mark.parametrize(("bound", "peak"), [(2, 2), (None, 4)])
def test_max_live_trees_bounds_the_trees_in_flight(tiny: object, bound: int | None,
                                                   peak: int) -> None:
    """Trees start when one finishes, not all at once; branches stay free to fill up."""
    StartCountingMaze.events = []
    result = collect("treegym/StartCountingMaze-v0", tiny, TreeSampler(m=1, n=1, l=1, k=None),
                     tasks=4, max_live_trees=bound,
                     on_tree=lambda _: StartCountingMaze.events.append("done"), **SHORT)
    assert len(result.trees) == 4 and StartCountingMaze.events.count("start") == 4
    assert peak_in_flight(StartCountingMaze.events) == peak


def test_progress_moves_before_the_first_tree_is_done(tiny: object) -> None:
    heard: list[tuple[str, int, int | None]] = []
    result = collect("treegym/Maze-v0", tiny, TreeSampler(m=1, n=2, l=1, k=1), tasks=2,
                     max_live_trees=1,
                     progress=lambda done, total, what: heard.append((what, done, total)),
                     **SHORT)
    last = {what: (done, total) for what, done, total in heard}
    assert last == {"trees": (2, 2), "leaves": (6, 6),  # every leaf made, 1 kept per tree
                    "generated tokens": (result.stats.generated_tokens, None)}
    tokens = [done for what, done, _ in heard if what == "generated tokens"]
    assert tokens[0] == 0 and tokens == sorted(tokens)
    before_first_tree = heard[:heard.index(("trees", 1, 2))]
    assert any(what == "generated tokens" and done > 0 for what, done, _ in before_first_tree)
    assert any(what == "leaves" and done > 0 for what, done, _ in before_first_tree)


def test_max_live_trees_must_be_positive(tiny: object) -> None:
    with pytest.raises(ConfigError, match="max_live_trees must be at least 1"):
        collect("treegym/Maze-v0", tiny, ChainSampler(n=1), tasks=1, max_live_trees=0)


# tiny's own template, but its tools block renders only a lone tool: the one-tool probe
# ChatRenderer uses shows up, so treegym trusts the template, and Maze's two tools vanish
LONE_TOOL = "{%- for tool in tools if tools | length == 1 %}"


def test_a_template_that_drops_the_tools_is_refused_at_start() -> None:
    tokenizer = load_tokenizer(tiny_path())
    assert "{%- for tool in tools %}" in tokenizer.chat_template
    tokenizer.chat_template = tokenizer.chat_template.replace("{%- for tool in tools %}",
                                                              LONE_TOOL)
    policy = MenuPolicy(tokenizer, [call("look")])
    with pytest.raises(ConfigError) as caught:
        collect("treegym/Maze-v0", policy, ChainSampler(n=1), tasks=2, **SHORT)
    message = str(caught.value)
    assert "treegym/Maze-v0" in message and "(look, move)" in message
    assert str(tiny_path()) in message and "chat template" in message
    assert policy.ledger.generated == 0, "refused before anything was generated"


def test_tool_names_in_the_task_text_alone_do_not_count() -> None:
    """Maze's task text says "use look() and move(direction)": that is no tool schema."""
    tools = [{"type": "function", "function": {"name": "move", "parameters": {}}}]
    task = "Use move(direction) to reach the goal."
    with pytest.raises(ConfigError, match="names none of its tools"):
        check_tools_rendered(f"<|im_start|>user\n{task}<|im_end|>", task, tools,
                             env_id="x/Y-v0", template="t")
    check_tools_rendered(f'<tools>{{"name": "move"}}</tools>\n{task}', task, tools,
                         env_id="x/Y-v0", template="t")
    check_tools_rendered(task, task, [], env_id="x/Y-v0", template="t")
