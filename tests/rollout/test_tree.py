"""TreeBuilder: nodes come from the env's turn as `step` reported it, points own worlds."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import CounterEnv, call

import treegym
from treegym.rollout import Point, TreeBuilder


class DoubledReward(CounterEnv):
    """Reshapes the reward in `step`'s return, as a Gymnasium reward wrapper would."""

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = super().step(action)
        return obs, 2 * reward + 0.5, terminated, truncated, info


treegym.register("testns/DoubledReward-v0", entry_point=DoubledReward)


def test_a_node_keeps_the_reward_step_returned_and_the_turns_calls() -> None:
    env = treegym.make("testns/DoubledReward-v0")
    env.reset(seed=0)
    builder = TreeBuilder(None)
    builder.keep(None, Point(env, None))
    point = builder.fork(builder.points[None])
    first = builder.step(point, None, call("add", amount=3), made_by="human")
    answer = f"<answer>{env.task.answer}</answer>"  # the right one: score 1
    second = builder.step(point, first.id, answer, made_by="scripted")
    assert (first.reward, first.calls[0].name, first.results[0].ok) == (0.5, "add", True)
    assert second.reward == 2 * 1.0 + 0.5 and second.terminated
    assert [n.depth for n in builder.nodes] == [1, 2] and second.parent == first.id
    assert builder.points[None].env.total == 0, "stepping a fork leaves the kept point alone"
    assert builder.path(second.id) == [first, second]
    builder.keep(second.id, point)
    worlds = [p.env for p in builder.points.values()]
    builder.close()
    builder.close()
    assert builder.points == {} and all(w._closed for w in worlds)


@pytest.fixture(scope="module")
def tiny() -> Any:
    pytest.importorskip("transformers", reason="a policy needs the torch extra")
    from treegym.policy import make_policy

    return make_policy("tiny")


def test_a_typed_turn_extends_a_forked_prefix_exactly_as_the_trajectory(tiny: Any) -> None:
    from treegym.policy import ChatRenderer

    env = treegym.make("testns/DoubledReward-v0")
    env.reset(seed=0)
    chat = ChatRenderer(tiny.tokenizer)
    builder = TreeBuilder(chat, tiny)
    prompt = chat.prompt_ids([{"role": "user", "content": "count"}], [])
    builder.keep(None, Point(env, tiny.start(prompt)))
    point = builder.fork(builder.points[None])
    node = builder.step(point, None, call("add", amount=1), made_by="human")
    assert point.ctx is not None and point.ctx.ids == prompt + node.action_ids + node.obs_ids
    assert builder.points[None].ctx.ids == prompt, "the kept prefix is shared, not extended"
    leaf = builder.step(point, node.id, "<answer>1</answer>", made_by="human")
    assert leaf.is_leaf and point.ctx is None and not leaf.obs_ids
    builder.keep(leaf.id, point)
    builder.close()
