"""Shared fixtures. Registers the test-only CounterEnv so the registry tests see it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

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


@pytest.fixture(scope="session")
def docker_client() -> Any:
    """A client for a reachable Docker engine with the sandbox image built. Skips without
    an engine, unless TREEGYM_REQUIRE_DOCKER=1 (CI), where that is a failure."""
    from treegym.sandboxes import SandboxError
    from treegym.sandboxes.docker_image import docker_client as connect
    from treegym.sandboxes.docker_image import ensure_image

    try:
        client = connect()
    except SandboxError as e:
        if os.environ.get("TREEGYM_REQUIRE_DOCKER") == "1":
            pytest.fail(f"TREEGYM_REQUIRE_DOCKER=1 but {e}")
        pytest.skip(f"no Docker engine: {e}")
    ensure_image(client=client)
    return client
