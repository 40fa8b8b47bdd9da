"""The rollout engine: grows many trees at once, one batched `generate` per step.

Every branch is a live point (env and context) of one tree's `TreeBuilder`. Tool calls
run on a thread pool while the next batch generates, so model and tools overlap. At a
node that may later be expanded the builder keeps a fork of the point; an expansion forks
that kept point again, so nothing before the branch point is generated or executed twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import numpy as np

from ..env import AgentEnv
from ..errors import ConfigError, TreegymError
from ..policy import ChatRenderer, Generation, Policy, SamplingParams
from ..records import Origin, Tree, Turn
from .samplers import Sampler, canonical_key
from .tree import Point, TreeBuilder, run_turn

logger = logging.getLogger(__name__)


@dataclass
class TreeRun:
    """One tree while it grows: its record, its builder and its branches in flight."""

    record: Tree
    sampler: Sampler
    rng: np.random.Generator
    builder: TreeBuilder = field(init=False)  # made by Engine.start_tree
    active: int = 0
    round: int = 0

    @property
    def expanding(self) -> bool:
        """Whether nodes made now may be expansion points of a later round."""
        return self.round < self.sampler.rounds


@dataclass
class Branch:
    run: TreeRun
    point: Point
    parent: int | None
    origin: Origin | None = None

    @property
    def depth(self) -> int:
        """The depth of the turn this branch takes next."""
        return self.run.builder.depth(self.parent) + 1

    def seed(self, base: int) -> int:
        """This turn's sampling seed, from the branch's place in its tree alone, so the
        same tree comes out whatever else shares the batch (threads, Ray workers)."""
        record = self.run.record
        where = (0, 0) if self.origin is None else (self.origin.round, self.origin.index)
        key = [base, record.seed, record.task_index, record.tree_index, *where, self.depth]
        return int(np.random.SeedSequence(key).generate_state(1)[0])


@dataclass
class _Stepped:
    turn: Turn
    seconds: float


STEP_TIMEOUT = 900.0  # seconds one env.step (all its tool calls) may take by default


class StepTimeout(TreegymError):
    """A step outran the engine's watchdog; its env was closed to stop it."""


def _step(env: AgentEnv, text: str) -> _Stepped:
    start = time.perf_counter()
    turn = run_turn(env, text)
    return _Stepped(turn, time.perf_counter() - start)


class Engine:
    """Drives branches to their leaves; `on_tree_done` gets each finished tree, and
    `on_step` is called after every step of the loop, so a caller can report progress
    (`leaves`, the policy's ledger) while no tree has finished yet."""

    def __init__(
        self,
        policy: Policy,
        params: SamplingParams,
        *,
        workers: int = 4,
        on_tree_done: Callable[[TreeRun], None],
        next_trees: Callable[[], list[Branch]],
        on_step: Callable[[], None] | None = None,
        step_timeout: float = STEP_TIMEOUT,
    ) -> None:
        if step_timeout <= 0:
            raise ConfigError(f"step_timeout must be positive, not {step_timeout}")
        self.policy = policy
        self.step_timeout = step_timeout
        self.chat = ChatRenderer(policy.tokenizer)
        self.params = params
        self.workers = workers
        self.on_tree_done = on_tree_done
        self.next_trees = next_trees
        self.on_step = on_step
        self.gen_seconds = 0.0
        self.leaves = 0
        self._branches: dict[int, Branch] = {}
        self._runs: dict[int, TreeRun] = {}

    @property
    def live_branches(self) -> int:
        return len(self._branches)

    @property
    def live_trees(self) -> int:
        """Trees started and not yet finished, whether or not a branch of theirs is live."""
        return len(self._runs)

    # -- starting trees ----------------------------------------------------------------

    def start_tree(self, run: TreeRun, env: AgentEnv, prompt_ids: list[int]) -> Branch:
        """The first branch of a tree, from a freshly reset env and its prompt."""
        run.builder = TreeBuilder(self.chat, self.policy)
        point = Point(env, self.policy.start(prompt_ids))
        self._runs[id(run)] = run
        if run.expanding:
            run.builder.keep(None, run.builder.fork(point))
        return self._track(Branch(run, point, parent=None))

    # -- the loop ----------------------------------------------------------------------

    def run(self) -> None:
        """Run until `next_trees` has nothing more and every branch reached a leaf."""
        ready = self.next_trees()
        pending: dict[Future[_Stepped], tuple[Branch, Generation, float]] = {}
        started: dict[Future[_Stepped], float] = {}
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="treegym-tools")
        try:
            while ready or pending:
                if ready:
                    gens, seconds = self._generate(ready)
                    for branch, gen in zip(ready, gens, strict=True):
                        future = pool.submit(_step, branch.point.env, gen.text)
                        pending[future] = (branch, gen, seconds)
                        started[future] = time.monotonic()
                    ready = []
                first = min(started.values(), default=time.monotonic())
                left = max(first + self.step_timeout - time.monotonic(), 0.0)
                done, _ = wait(pending, timeout=left, return_when=FIRST_COMPLETED)
                for future in done:
                    branch, gen, seconds = pending.pop(future)
                    del started[future]
                    ready += self._advance(branch, gen, seconds, future)
                for future in self._overdue(started):
                    branch, gen, seconds = pending.pop(future)
                    del started[future]
                    branch.point.env.close()
                    ready += self._advance(branch, gen, seconds, self._timed_out())
                ready += self.next_trees()
                if self.on_step is not None:
                    self.on_step()
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    def _overdue(self, started: dict[Future[_Stepped], float]) -> list[Future[_Stepped]]:
        """The watchdog: steps running for `step_timeout` or longer.

        A sandbox call is already bounded by its own timeout; this bounds a step of many
        calls, or an env whose world hangs some other way. The caller closes the branch's
        env, which kills its sandbox, and records the step as failed; the thread is left
        to finish against a closed world, and whatever it returns is ignored.
        """
        now = time.monotonic()
        return [f for f, t in started.items() if not f.done() and now - t >= self.step_timeout]

    def _timed_out(self) -> Future[_Stepped]:
        failed: Future[_Stepped] = Future()
        failed.set_exception(StepTimeout(
            f"the step ran past the engine's {self.step_timeout:g} s watchdog; its env was "
            "closed (raise step_timeout for slower tools)"))
        return failed

    def _generate(self, branches: list[Branch]) -> tuple[list[Generation], float]:
        seeds = None
        if self.params.seed is not None:
            seeds = [branch.seed(self.params.seed) for branch in branches]
        start = time.perf_counter()
        gens = self.policy.generate([b.point.ctx for b in branches], self.params, seeds=seeds)
        seconds = time.perf_counter() - start
        self.gen_seconds += seconds
        return gens, seconds

    def _advance(self, branch: Branch, gen: Generation, gen_seconds: float,
                 future: Future[_Stepped]) -> list[Branch]:
        """Record the turn; continue the branch, or end it and maybe grow its tree."""
        run, builder = branch.run, branch.run.builder
        error = future.exception()
        stepped = None if error is not None else future.result()
        node = builder.record(
            branch.point, branch.parent, None if stepped is None else stepped.turn, gen,
            made_by="policy", origin=branch.origin, gen_seconds=gen_seconds,
            error=None if error is None else f"{type(error).__name__}: {error}",
            tool_seconds=0.0 if stepped is None else stepped.seconds,
        )
        if not node.is_leaf and run.expanding:  # after the observation: branches must see it
            try:
                builder.keep(node.id, builder.fork(branch.point))
            except TreegymError as exc:  # a world that can't be copied ends its branch here
                node.error = f"cannot fork the world here: {exc}"
                node.obs_ids = []
        if not node.is_leaf:
            return [Branch(run, branch.point, node.id, branch.origin)]
        self._drop(branch)
        self.leaves += 1
        run.active -= 1
        return self._grow(run) if run.active == 0 else []

    def _grow(self, run: TreeRun) -> list[Branch]:
        """Start the next expansion round, or finish the tree."""
        if not run.expanding:
            self._finish(run)
            return []
        points = run.sampler.expansion_points(run.builder.nodes, run.rng)
        run.round += 1
        branches = []
        for i, at in enumerate(points):
            try:
                point = run.builder.fork(run.builder.points[at])
            except TreegymError as exc:  # its world died since: this expansion is lost
                logger.warning("tree %s/%s: no expansion from node %s: %s",
                               run.record.task_index, run.record.tree_index, at, exc)
                continue
            origin = Origin(round=run.round, index=i)
            branches.append(self._track(Branch(run, point, at, origin)))
        if not run.expanding:  # that was the last round: no node needs its world any more
            run.builder.close()
        return branches or self._grow(run)

    def _finish(self, run: TreeRun) -> None:
        run.builder.close()
        run.record.nodes = run.builder.nodes
        _renumber(run.record)
        run.record.kept = run.sampler.keep(run.record.leaves, run.rng)
        self._runs.pop(id(run), None)
        self.on_tree_done(run)

    # -- bookkeeping and cleanup -------------------------------------------------------

    def _track(self, branch: Branch) -> Branch:
        branch.run.active += 1
        self._branches[id(branch.point.env)] = branch
        return branch

    def _drop(self, branch: Branch) -> None:
        self._branches.pop(id(branch.point.env), None)
        branch.run.builder.release(branch.point)

    def close(self) -> None:
        """Free every live branch and snapshot: after Ctrl-C nothing may stay running."""
        for branch in list(self._branches.values()):
            self._drop(branch)
        for run in list(self._runs.values()):
            run.builder.close()
        self._runs.clear()


def _renumber(tree: Tree) -> None:
    """Give nodes ids in canonical order, so equal trees are equal records."""
    order = sorted(tree.nodes, key=canonical_key)
    new_id = {node.id: i for i, node in enumerate(order)}
    for node in order:
        node.id = new_id[node.id]
        node.parent = None if node.parent is None else new_id[node.parent]
    tree.nodes = order
