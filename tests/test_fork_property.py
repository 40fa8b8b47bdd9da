"""Property: a fork replays exactly, and siblings never see each other's steps."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from helpers import call
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import treegym

DIRECTIONS = ["north", "south", "east", "west"]

actions = st.one_of(
    st.sampled_from(DIRECTIONS).map(lambda d: call("move", direction=d)),
    st.just(call("look")),
    st.lists(st.sampled_from(DIRECTIONS), min_size=2, max_size=4).map(
        lambda ds: "".join(call("move", direction=d) for d in ds)
    ),
    st.just(call("move", direction="up")),
    st.just('<tool_call>{"name": "move", "arguments": {"direction": </tool_call>'),
    st.just(call("jump")),
    st.text(max_size=30),
    st.just("<answer>done</answer>"),
)


def run(env: treegym.AgentEnv, seq: list[str]) -> list[tuple[Any, ...]]:
    """Apply actions until the episode ends; the trace is everything step returned."""
    trace = []
    for action in seq:
        if env._done:
            break
        obs, reward, term, trunc, info = env.step(action)
        trace.append((obs, reward, term, trunc, info["calls"], info["results"],
                      info["parse_error"]))
    return trace


def fresh(seed: int, shaped: bool) -> treegym.AgentEnv:
    env = treegym.make("treegym/Maze-v0", size=4, shaped=shaped, max_turns=12)
    env.reset(seed=seed)
    return env


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**16),
    shaped=st.booleans(),
    prefix=st.lists(actions, max_size=8),
    ours=st.lists(actions, max_size=8),
    theirs=st.lists(actions, max_size=8),
)
def test_fork_replays_and_isolates(
    seed: int, shaped: bool, prefix: list[str], ours: list[str], theirs: list[str]
) -> None:
    parent = fresh(seed, shaped)
    run(parent, prefix)
    if parent._done:
        return
    child = parent.fork()
    twin = parent.fork()
    reference = fresh(seed, shaped)
    run(reference, prefix)
    try:
        # the child goes first with other actions; the parent must not notice
        child_trace = run(child, theirs)
        assert run(parent, ours) == run(twin, ours) == run(reference, ours)
        assert parent.episode() == reference.episode()
        # and the child's own trace is what a fresh replay of its actions gives
        replay = fresh(seed, shaped)
        run(replay, prefix)
        assert run(replay, theirs) == child_trace
    finally:
        for env in (parent, child, twin, reference):
            env.close()


code_actions = st.one_of(
    st.integers(-9, 9).map(lambda k: call("python", code=f"x = globals().get('x', 0) + {k}")),
    st.integers(0, 9).map(lambda k: call("python", code=f"open('log.txt', 'a').write('{k}')")),
    st.just(call("python", code="print(x)")),
    st.just(call("python", code="print(open('log.txt').read())")),
    st.just(call("python", code="import os; print(sorted(os.listdir('.')))")),
    st.just(call("python", code="import random; print(random.random() < 2)")),
    st.just(call("python", code="1 / 0")),
)


def outcomes(env: treegym.AgentEnv, seq: list[str]) -> list[tuple[Any, ...]]:
    """`run`'s trace without tool timings, which a real interpreter never repeats."""
    return [(obs, reward, term, trunc, calls, [r.model_copy(update={"seconds": 0.0})
                                              for r in results], error)
            for obs, reward, term, trunc, calls, results, error in run(env, seq)]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**16),
    prefix=st.lists(code_actions, max_size=5),
    ours=st.lists(code_actions, min_size=1, max_size=5),
    theirs=st.lists(code_actions, min_size=1, max_size=5),
)
def test_sandbox_fork_replays_and_isolates(
    seed: int, prefix: list[str], ours: list[str], theirs: list[str]
) -> None:
    """The same property where the world is a live interpreter and files in a sandbox."""
    def fresh_calc() -> treegym.AgentEnv:
        env = treegym.make("treegym/PyCalc-v0", max_turns=16)
        env.reset(seed=seed)
        return env

    check_fork_replays_and_isolates(fresh_calc, prefix, ours, theirs)


def check_fork_replays_and_isolates(fresh: Callable[[], treegym.AgentEnv], prefix: list[str],
                                    ours: list[str], theirs: list[str]) -> None:
    """After `prefix`, a fork's steps (`theirs`) leave its parent exactly where a fresh
    replay of `prefix` is, and are themselves what a fresh replay of prefix + theirs gives."""
    parent = fresh()
    envs = [parent]
    try:
        outcomes(parent, prefix)
        child, reference = parent.fork(), fresh()
        envs += [child, reference]
        assert child.history == parent.history
        outcomes(reference, prefix)
        child_trace = outcomes(child, theirs)
        assert outcomes(parent, ours) == outcomes(reference, ours)
        replay = fresh()
        envs.append(replay)
        outcomes(replay, prefix)
        assert outcomes(replay, theirs) == child_trace
    finally:
        for env in envs:
            env.close()
