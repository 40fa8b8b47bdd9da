"""Shared policy servers: one tree's contexts always go to the same server.

With several `openai:` endpoints behind one rollout, a branch sent to another server
than its trunk would miss that server's prefix cache and prefill the whole trunk again,
which is the cost a tree exists to avoid. So a new context (a tree's root) goes to the
server with the fewest live contexts, and every fork of it follows its parent. Routing
by prompt content would not spread the load: many envs (Maze, for one) give every task
the same prompt. Ties go round from `offset`, so workers that start together begin on
different servers.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from .base import (
    Context,
    Generation,
    Ledger,
    Policy,
    PolicyError,
    SamplingParams,
    check_batch,
)
from .spec import make_policy

if TYPE_CHECKING:
    import torch

_ENDPOINT_SPLIT = re.compile(r",(?=openai:)")


class RoutedPolicy:
    """A Policy over several policies (servers), each context pinned to one of them."""

    backend = "routed"

    def __init__(self, policies: Sequence[Policy], *, offset: int = 0) -> None:
        if not policies:
            raise PolicyError("RoutedPolicy needs at least one policy")
        self.policies = list(policies)
        self.tokenizer = self.policies[0].tokenizer
        self.offset = offset
        self._owner: dict[int, tuple[Context, int]] = {}  # id(ctx) -> (ctx, server)
        self._live: Counter[int] = Counter()  # server -> live contexts
        self._pool = ThreadPoolExecutor(len(self.policies), thread_name_prefix="treegym-route")

    @property
    def ledger(self) -> Ledger:
        """The servers' ledgers added up."""
        total = Ledger()
        for policy in self.policies:
            total.add(prefilled=policy.ledger.prefilled, cached=policy.ledger.cached,
                      generated=policy.ledger.generated)
        return total

    @property
    def path(self) -> object:
        """The first server's checkpoint, which a trainer's learner starts from."""
        return self.policies[0].path

    def server_of(self, ctx: Context) -> int:
        try:
            return self._owner[id(ctx)][1]
        except KeyError:
            raise PolicyError("this context was not made by this RoutedPolicy") from None

    def _own(self, ctx: Context, server: int) -> Context:
        self._owner[id(ctx)] = (ctx, server)
        self._live[server] += 1
        return ctx

    def least_loaded(self) -> int:
        """The server with the fewest live contexts; ties go round from `offset`."""
        n = len(self.policies)
        order = [(self.offset + i) % n for i in range(n)]
        return min(order, key=lambda server: self._live[server])

    def start(self, prompt_ids: Sequence[int]) -> Context:
        server = self.least_loaded()
        return self._own(self.policies[server].start(prompt_ids), server)

    def extend(self, ctx: Context, ids: Sequence[int]) -> None:
        self.policies[self.server_of(ctx)].extend(ctx, ids)

    def fork(self, ctx: Context) -> Context:
        server = self.server_of(ctx)
        return self._own(self.policies[server].fork(ctx), server)

    def generate(
        self,
        ctxs: Sequence[Context],
        params: SamplingParams | None = None,
        stop: Sequence[str] | None = None,
        seeds: Sequence[int] | None = None,
    ) -> list[Generation]:
        """Each server generates its share of the batch, all servers at once."""
        check_batch(ctxs, seeds)
        rows: dict[int, list[int]] = {}
        for row, ctx in enumerate(ctxs):
            rows.setdefault(self.server_of(ctx), []).append(row)
        calls = {
            server: self._pool.submit(
                self.policies[server].generate, [ctxs[r] for r in share], params, stop,
                None if seeds is None else [seeds[r] for r in share],
            )
            for server, share in rows.items()
        }
        out: list[Generation | None] = [None] * len(ctxs)
        for server, call in calls.items():
            for row, gen in zip(rows[server], call.result(), strict=True):
                out[row] = gen
        return out  # type: ignore[return-value]  # every row was filled above

    def release(self, ctx: Context) -> None:
        entry = self._owner.pop(id(ctx), None)
        if entry is not None:
            self._live[entry[1]] -= 1
            self.policies[entry[1]].release(ctx)

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Every server takes the new weights (each must have a weight-update route)."""
        weights = list(weights)
        for policy in self.policies:
            load = getattr(policy, "load_weights", None)
            if load is None:
                raise PolicyError(f"the {policy.backend} policy cannot take new weights")
            load(weights)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        for policy in self.policies:
            policy.close()


def split_endpoints(spec: str) -> list[str]:
    """`openai:A#M,openai:B#M` as its endpoints; any other spec is a list of one."""
    parts = _ENDPOINT_SPLIT.split(spec)
    if len(parts) > 1 and not all(p.startswith("openai:") for p in parts):
        raise PolicyError(
            f"policy spec {spec!r}: a list of policies must be openai:URL#MODEL endpoints "
            "separated by commas"
        )
    return parts


def make_worker_policy(spec: str, rank: int = 0) -> Policy:
    """The policy worker `rank` uses: its own model, or a route over shared servers."""
    endpoints = split_endpoints(spec)
    if len(endpoints) == 1:
        return make_policy(spec)
    policies: list[Policy] = []
    try:
        for endpoint in endpoints:
            policies.append(make_policy(endpoint))
    except BaseException:
        for policy in policies:
            policy.close()
        raise
    return RoutedPolicy(policies, offset=rank)
