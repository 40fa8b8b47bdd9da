"""`TreeBuilder`: one tree's nodes and the points it can grow from.

The rollout engine, `play` and the warm start's demonstrations all grow trees, and they
differ only in who picks the next action and when a point is kept. What a turn becomes in
the record, and how a context is brought past it, is written here once: a node is made
from the env's own `Turn`, a sampled action keeps the ids and log-probs the policy
produced, and a typed or scripted one is encoded, with 0.0 placeholders that
`made_by` marks as no behaviour log-probs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..env import AgentEnv
from ..policy import ChatRenderer, Context, Generation, Policy
from ..records import MadeBy, Node, Origin, Turn


def run_turn(env: AgentEnv, action: str) -> Turn:
    """Step `env` and return its `Turn` as `step` reported it.

    The env's history holds the calls and results; observation, reward and the end flags
    come from what `step` returned, so a subclass or wrapper that reshapes the reward
    (Gymnasium's usual way) is recorded as the learner must see it.
    """
    observation, reward, terminated, truncated, _ = env.step(action)
    return env.history[-1].model_copy(update={
        "observation": observation, "reward": float(reward), "terminated": bool(terminated),
        "truncated": bool(truncated)})


@dataclass
class Point:
    """A place a tree can grow from: the world and the KV prefix right after a turn, or
    after reset for the root. `ctx` is None without a policy, and at a leaf."""

    env: AgentEnv
    ctx: Context | None


class TreeBuilder:
    """Owns one tree's nodes and its kept points; node ids are indices into `nodes`.

    Points are keyed by the node they follow, None for the root. The builder closes every
    kept point on `close`, so a caller that keeps points through it can't leak a world.
    """

    def __init__(self, chat: ChatRenderer | None, policy: Policy | None = None) -> None:
        self.chat = chat
        self.policy = policy
        self.nodes: list[Node] = []
        self.points: dict[int | None, Point] = {}

    # -- points ------------------------------------------------------------------------

    def fork(self, point: Point) -> Point:
        """A copy of `point` to step on: the world forked, the prefix shared, not recomputed."""
        env = point.env.fork()
        if point.ctx is None or self.policy is None:
            return Point(env, None)
        try:
            return Point(env, self.policy.fork(point.ctx))
        except BaseException:
            env.close()
            raise

    def keep(self, at: int | None, point: Point) -> None:
        """Keep `point` as the place to grow from after node `at` (None: the root)."""
        self.points[at] = point

    def release(self, point: Point) -> None:
        """Close a point's world and free its prefix."""
        point.env.close()
        if point.ctx is not None and self.policy is not None:
            self.policy.release(point.ctx)
        point.ctx = None

    def close(self) -> None:
        """Release every kept point. Safe to call more than once."""
        for point in self.points.values():
            self.release(point)
        self.points.clear()

    # -- nodes -------------------------------------------------------------------------

    def depth(self, node_id: int | None) -> int:
        """Turns from the prompt down to `node_id`; the root is depth 0."""
        return 0 if node_id is None else self.nodes[node_id].depth

    def step(self, point: Point, parent: int | None, action: str | Generation, *,
             made_by: MadeBy, origin: Origin | None = None, gen_seconds: float = 0.0) -> Node:
        """Run `action` on `point`'s world in place and record it as a child of `parent`."""
        text = action.text if isinstance(action, Generation) else action
        start = time.perf_counter()
        turn = run_turn(point.env, text)
        return self.record(point, parent, turn, action, made_by=made_by,
                           origin=origin, gen_seconds=gen_seconds,
                           tool_seconds=time.perf_counter() - start)

    def record(self, point: Point, parent: int | None, turn: Turn | None,
               action: str | Generation, *, made_by: MadeBy, origin: Origin | None = None,
               error: str | None = None, gen_seconds: float = 0.0,
               tool_seconds: float = 0.0) -> Node:
        """Add the turn just taken from `point` and bring the point's prefix past it.

        `turn` is the env's record of the step, None when the step failed with `error`.
        A sampled action's ids are already in the prefix (generating put them there); a
        typed or scripted one's are appended with the observation. At a leaf nothing
        comes next, so the prefix is freed and `point.ctx` becomes None.
        """
        text = action.text if isinstance(action, Generation) else action
        node = Node(id=len(self.nodes), parent=parent, depth=self.depth(parent) + 1,
                    origin=origin, made_by=made_by, action=text, action_ids=[],
                    action_logprobs=[], error=error, gen_seconds=gen_seconds,
                    tool_seconds=tool_seconds)
        if turn is not None:
            fields = ("calls", "results", "observation", "reward", "terminated",
                      "truncated")
            for name in fields:
                setattr(node, name, getattr(turn, name))
        if isinstance(action, Generation):
            node.action_ids, node.action_logprobs = list(action.ids), list(action.logprobs)
            node.entropies, node.finish_reason = list(action.entropies), action.finish_reason
        elif self.chat is not None:
            node.action_ids = self.chat.encode(action) + [self.chat.tokenizer.eos_token_id]
            node.action_logprobs = [0.0] * len(node.action_ids)
        self.nodes.append(node)
        if node.is_leaf:
            if point.ctx is not None and self.policy is not None:
                self.policy.release(point.ctx)
            point.ctx = None
        elif self.chat is not None:
            node.obs_ids = self.chat.turn_ids(node.action_ids, [node.observation])
            if point.ctx is not None and self.policy is not None:
                typed = [] if isinstance(action, Generation) else node.action_ids
                self.policy.extend(point.ctx, typed + node.obs_ids)
        return node

    def path(self, node_id: int | None) -> list[Node]:
        """The turns from the first one down to `node_id`."""
        path = []
        while node_id is not None:
            node = self.nodes[node_id]
            path.append(node)
            node_id = node.parent
        return path[::-1]
