"""Shared fixtures. Registers the test-only CounterEnv so the registry tests see it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from helpers import CounterEnv

import treegym

treegym.register("treegym/Counter-v0", entry_point=CounterEnv)


@pytest.fixture
def counter() -> Iterator[CounterEnv]:
    env = treegym.make("treegym/Counter-v0", max_turns=6)
    env.reset(seed=3)
    yield env
    env.close()
