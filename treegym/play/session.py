"""`PlaySession`: a tree of turns that a person (and optionally a policy) grows by hand.

Every turn keeps a *point*: the world right after it (a forked env, never stepped again)
and, with a policy, the KV prefix right after its observation. A step forks the point it
starts from, so going back, forking and switching never re-execute or re-generate
anything: a branch is only a cursor on a point. The session is plain Python with no
terminal in it, so tests drive it directly and `tui.py` only reads and prints.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..env import AgentEnv
from ..errors import TreegymError
from ..policy import ChatRenderer, Context, Generation, Policy, SamplingParams
from ..records import MadeBy, Node, Tree, write_jsonl
from ..registry import make
from ..rollout import Point, TreeBuilder

MAX_PROPOSALS = 16
"""More proposals than fit on a screen only cost generation time."""


class PlayError(TreegymError, ValueError):
    """A session command that can't be done here; the message says what can."""


@dataclass
class Proposal:
    """A policy's candidate next action, holding the forked prefix it was sampled on."""

    gen: Generation
    ctx: Context
    seconds: float


class PlaySession:
    """One task, one tree of turns, any number of branches (cursors) over it."""

    def __init__(
        self,
        env_id: str,
        *,
        seed: int = 0,
        env_kwargs: dict[str, Any] | None = None,
        policy: Policy | None = None,
        policy_name: str | None = None,
        params: SamplingParams | None = None,
    ) -> None:
        self.env_id = env_id
        self.seed = seed
        self.env_kwargs = dict(env_kwargs or {})
        self.policy = policy
        self.policy_name = policy_name or (policy.backend if policy is not None else None)
        self.params = params or SamplingParams(max_tokens=128)
        self.chat = ChatRenderer(policy.tokenizer) if policy is not None else None
        self.builder = TreeBuilder(self.chat, policy)
        self.branches: list[int | None] = [None]
        self.current = 0
        self.proposals: list[Proposal] = []
        self._generations = 0
        env = make(env_id, **self.env_kwargs)
        try:
            self.prompt, info = env.reset(seed=seed)
            self.task = info["task"]
            self.tools: list[dict[str, Any]] = info["tools"]
            self.max_turns: int = env.config.max_turns
            self.prompt_ids = (
                self.chat.prompt_ids([{"role": "user", "content": self.prompt}], self.tools)
                if self.chat is not None else []
            )
            ctx = policy.start(self.prompt_ids) if policy is not None else None
        except BaseException:
            env.close()
            raise
        self.builder.keep(None, Point(env, ctx))
        self._closed = False

    # -- where we are ------------------------------------------------------------------

    @property
    def nodes(self) -> list[Node]:
        return self.builder.nodes

    @property
    def points(self) -> dict[int | None, Point]:
        """Every turn's world (and prefix), None for the start: going back reuses them."""
        return self.builder.points

    @property
    def head(self) -> int | None:
        """The node the current branch stands on (None before its first turn)."""
        return self.branches[self.current]

    @property
    def env(self) -> AgentEnv:
        """The world at the head, for looking at; stepping always forks it first."""
        return self.points[self.head].env

    def depth(self, node_id: int | None) -> int:
        return self.builder.depth(node_id)

    def finished(self, node_id: int | None) -> bool:
        return node_id is not None and self.nodes[node_id].is_leaf

    def path(self, node_id: int | None) -> list[Node]:
        """The turns from the first one down to `node_id`."""
        return self.builder.path(node_id)

    def episode_return(self, node_id: int | None) -> float:
        return sum(node.reward for node in self.path(node_id))

    def need_policy(self, command: str) -> Policy:
        """The policy, or an error telling how to start with one."""
        if self.policy is None:
            raise PlayError(f"{command} needs a model: start with --policy SPEC (e.g. tiny)")
        return self.policy

    # -- growing the tree --------------------------------------------------------------

    def step(self, action: str, *, made_by: MadeBy = "human",
             proposal: Proposal | None = None) -> Node:
        """Run `action` from the head on a fork of its world; the new turn becomes the head.

        A proposal brings the prefix it was sampled on; a typed action steps on a fork
        of the head's prefix, and the builder encodes it.
        """
        head = self._open_head()
        if proposal is None:
            self._drop_proposals()
        base = self.points[head]
        if proposal is None:
            point = self.builder.fork(base)
        else:
            point = Point(base.env.fork(), proposal.ctx)
        try:
            node = self.builder.step(
                point, head, action if proposal is None else proposal.gen, made_by=made_by,
                gen_seconds=0.0 if proposal is None else proposal.seconds)
        except BaseException:
            if proposal is None:
                self.builder.release(point)
            else:  # take() frees the proposal's prefix
                point.env.close()
            raise
        self.builder.keep(node.id, point)
        self.branches[self.current] = node.id
        return node

    def propose(self, k: int) -> list[Proposal]:
        """Let the policy sample `k` next actions from the head, without running them."""
        if not 1 <= k <= MAX_PROPOSALS:
            raise PlayError(f"/model K takes K from 1 to {MAX_PROPOSALS}")
        policy = self.need_policy("/model")
        head = self._open_head()
        self._drop_proposals()
        base = self.points[head]
        assert base.ctx is not None
        ctxs = [policy.fork(base.ctx) for _ in range(k)]
        params = self.params
        if params.seed is not None:  # a new seed per call, so proposals don't repeat
            params = params.model_copy(update={"seed": params.seed + 100_003 * self._generations})
        self._generations += 1
        start = time.perf_counter()
        try:
            gens = policy.generate(ctxs, params)
        except BaseException:
            for ctx in ctxs:
                policy.release(ctx)
            raise
        seconds = time.perf_counter() - start
        self.proposals = [Proposal(g, c, seconds) for g, c in zip(gens, ctxs, strict=True)]
        return self.proposals

    def take(self, index: int) -> Node:
        """Run proposal `index` (0-based) as the next turn; the other proposals are dropped."""
        if not 0 <= index < len(self.proposals):
            raise PlayError(f"no proposal {index + 1}; pick 1-{len(self.proposals)}")
        chosen = self.proposals.pop(index)
        self._drop_proposals()
        try:
            return self.step(chosen.gen.text, made_by="policy", proposal=chosen)
        except BaseException:
            if self.policy is not None:
                self.policy.release(chosen.ctx)
            raise

    def discard(self) -> None:
        """Forget the pending proposals."""
        self._drop_proposals()

    def auto(self, on_turn: Callable[[Node], None] | None = None) -> list[Node]:
        """Let the policy play the current branch to its end; `on_turn(node)` sees each turn."""
        self.need_policy("/auto")
        self._open_head()
        made = []
        while not self.finished(self.head):
            self.propose(1)
            made.append(self.take(0))
            if on_turn is not None:
                on_turn(made[-1])
        return made

    # -- moving around -----------------------------------------------------------------

    def fork(self) -> int:
        """A new branch at the head, which becomes current; returns its 0-based index."""
        self._drop_proposals()
        if self.finished(self.head):
            raise PlayError("this branch is finished; /back to an open turn, then /fork")
        self.branches.append(self.head)
        self.current = len(self.branches) - 1
        return self.current

    def go(self, index: int) -> None:
        """Make branch `index` (0-based) current."""
        if not 0 <= index < len(self.branches):
            raise PlayError(f"no branch {index + 1}; there are {len(self.branches)} (/branches)")
        self._drop_proposals()
        self.current = index

    def back(self) -> int:
        """Move the current branch to its parent turn; its kept point is reused as is."""
        head = self.head
        if head is None:
            raise PlayError("already at the start of the episode")
        self._drop_proposals()
        self.branches[self.current] = self.nodes[head].parent
        return self.head

    # -- records -----------------------------------------------------------------------

    def to_tree(self) -> Tree:
        """The session as one `Tree` record; every finished episode is a kept leaf."""
        name = "human" if self.policy_name is None else f"human+{self.policy_name}"
        return Tree(
            env_id=self.env_id, env_kwargs=self.env_kwargs, task=self.task, task_index=0,
            tree_index=0, seed=self.seed, mode="tree", policy=name, tools=self.tools,
            prompt_ids=self.prompt_ids, nodes=[n.model_copy(deep=True) for n in self.nodes],
            kept=[n.id for n in self.nodes if n.is_leaf],
        )

    def save(self, path: str | Path) -> Tree:
        """Write the session's tree to `path` (replacing it) as one JSONL record."""
        tree = self.to_tree()
        write_jsonl(path, [tree], append=False)
        return tree

    # -- cleanup -----------------------------------------------------------------------

    def close(self) -> None:
        """Close every kept world and free every prefix. Safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        self._drop_proposals()
        self.builder.close()

    def __enter__(self) -> PlaySession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------------

    def _open_head(self) -> int | None:
        head = self.head
        if self.finished(head):
            node = self.nodes[head]
            raise PlayError(
                f"this branch is finished ({node.reason}, return "
                f"{self.episode_return(head):g}); /back, /go N or /fork from an open turn"
            )
        return head

    def _drop_proposals(self) -> None:
        for proposal in self.proposals:
            if self.policy is not None:
                self.policy.release(proposal.ctx)
        self.proposals = []
