"""Shared servers: every context of a tree goes to one server, new trees go to the least
loaded one, and routing changes no tree. Checked on MenuPolicy "servers", so the
assignment is deterministic and no model server is needed."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from helpers import call

from treegym.distributed import RoutedPolicy, split_endpoints
from treegym.distributed.digest import tree_digest
from treegym.policy import (
    Context,
    MenuPolicy,
    PolicyError,
    SamplingParams,
    load_tokenizer,
    tiny_path,
)
from treegym.rollout import TreeSampler, collect

pytest.importorskip("transformers", reason="rollouts need the torch extra for the tokenizer")

MOVES = [call("move", direction=d) for d in ("north", "south", "east", "west")]


@pytest.fixture(scope="module")
def tokenizer() -> object:
    return load_tokenizer(tiny_path())


class RecordingServer(MenuPolicy):
    """A MenuPolicy that keeps every context object it generated for."""

    def __init__(self, tokenizer: object) -> None:
        super().__init__(tokenizer, MOVES)
        self.seen: list[Context] = []

    def generate(self, ctxs: Sequence[Context], *args: object, **kwargs: object) -> list:
        self.seen += ctxs
        return super().generate(ctxs, *args, **kwargs)


class LineageRouter(RoutedPolicy):
    """Remembers which root context (one per tree) every context descends from."""

    def __init__(self, servers: Sequence[MenuPolicy]) -> None:
        super().__init__(servers)
        self.root: dict[int, tuple[Context, int]] = {}  # id(ctx) -> (ctx, root number)

    def start(self, prompt_ids: Sequence[int]) -> Context:
        ctx = super().start(prompt_ids)
        self.root[id(ctx)] = (ctx, len({r for _, r in self.root.values()}))
        return ctx

    def fork(self, ctx: Context) -> Context:
        child = super().fork(ctx)
        self.root[id(child)] = (child, self.root[id(ctx)][1])
        return child


def test_each_tree_stays_on_one_server_and_trees_do_not_change(tokenizer: object) -> None:
    servers = [RecordingServer(tokenizer) for _ in range(3)]
    router = LineageRouter(servers)
    options = dict(params=SamplingParams(seed=9), env_kwargs={"max_turns": 3},
                   policy_name="menu")
    sampler = TreeSampler(m=2, n=2, l=1)
    routed = collect("treegym/Maze-v0", router, sampler, 6, **options)
    alone = collect("treegym/Maze-v0", MenuPolicy(tokenizer, MOVES), sampler, 6, **options)
    assert [tree_digest(t) for t in routed.trees] == [tree_digest(t) for t in alone.trees]
    servers_of_tree: dict[int, set[int]] = {}
    for index, server in enumerate(servers):
        for ctx in server.seen:
            servers_of_tree.setdefault(router.root[id(ctx)][1], set()).add(index)
    assert len(servers_of_tree) == len(routed.trees) == 12
    assert all(len(used) == 1 for used in servers_of_tree.values()), servers_of_tree
    assert set().union(*servers_of_tree.values()) == {0, 1, 2}, "a server was left idle"
    assert routed.stats.generated_tokens == alone.stats.generated_tokens


def test_new_trees_go_to_the_least_loaded_server_and_forks_follow(tokenizer: object) -> None:
    routed = RoutedPolicy([MenuPolicy(tokenizer, MOVES) for _ in range(3)], offset=1)
    roots = [routed.start([5, 6, 7]) for _ in range(3)]
    assert [routed.server_of(r) for r in roots] == [1, 2, 0]
    forks = [routed.fork(roots[0]) for _ in range(3)]  # server 1 now holds 4 contexts
    assert {routed.server_of(f) for f in forks} == {1}
    assert routed.server_of(routed.start([5, 6, 7])) == 2
    for ctx in forks:
        routed.release(ctx)
    assert routed.least_loaded() == 1  # 1, 2 and 1 live contexts; ties go round from 1
    routed.close()


def test_endpoint_lists() -> None:
    one = "openai:http://a:8000#m?tokenizer=/t"
    assert split_endpoints(one) == [one]
    two = f"{one},openai:http://b:8000/v1#m"
    assert split_endpoints(two) == [one, "openai:http://b:8000/v1#m"]
    with pytest.raises(PolicyError, match="must be openai"):
        split_endpoints("hf:tiny,openai:http://b#m")


def test_a_foreign_context_is_refused(tokenizer: object) -> None:
    routed = RoutedPolicy([MenuPolicy(tokenizer, MOVES)])
    with pytest.raises(PolicyError, match="not made by this RoutedPolicy"):
        routed.fork(Context([1, 2, 3]))
    routed.close()
