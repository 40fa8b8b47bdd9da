"""`RemoteEnv.fork()` over the server has the in-process fork's property: a fork replays
exactly, and siblings never see each other's steps (files and interpreter included)."""

from __future__ import annotations

import pytest
from helpers import call
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_fork_property import check_fork_replays_and_isolates, code_actions, outcomes

import treegym
from treegym.errors import ConfigError, EpisodeError, ForkError
from treegym.serve import RemoteEnv
from treegym.serve.child import ServerProcess as Server
from treegym.serve.child import serving


@settings(max_examples=8, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 2**16),
    prefix=st.lists(code_actions, max_size=4),
    ours=st.lists(code_actions, min_size=1, max_size=4),
    theirs=st.lists(code_actions, min_size=1, max_size=4),
)
def test_remote_fork_replays_and_isolates(pycalc_server: Server, seed: int, prefix: list[str],
                                          ours: list[str], theirs: list[str]) -> None:
    def fresh() -> treegym.AgentEnv:
        env = treegym.make(f"remote:{pycalc_server.url}")
        env.reset(seed=seed)
        return env

    check_fork_replays_and_isolates(fresh, prefix, ours, theirs)


def test_remote_and_local_episodes_agree(pycalc_server: Server) -> None:
    """The remote env's steps are the served env's steps: same text, rewards and turns."""
    actions = [call("python", code="import os; print(sorted(os.listdir('.')))"),
               call("python", code="1/0"), "no call here"]
    remote = RemoteEnv(pycalc_server.url, max_turns=16)
    local = treegym.make("treegym/PyCalc-v0", max_turns=16)
    try:
        assert remote.reset(seed=5)[0] == local.reset(seed=5)[0]
        assert outcomes(remote, actions) == outcomes(local, actions)
    finally:
        remote.close()
        local.close()


def test_options_must_be_the_servers(pycalc_server: Server) -> None:
    with pytest.raises(ConfigError, match="--env-opt max_turns=3"):
        RemoteEnv(pycalc_server.url, max_turns=3)
    with pytest.raises(ConfigError, match="no treegym server answers"):
        treegym.make("remote:ws://127.0.0.1:9")
    with pytest.raises(ConfigError, match="not a server URL"):
        treegym.make("remote:127.0.0.1:8000")


def test_a_server_without_the_extension_cannot_fork(pycalc_server: Server) -> None:
    """What a plain OpenEnv server's /metadata says (no `fork`) makes fork() a clear error."""
    env = RemoteEnv(pycalc_server.url)
    try:
        env.server = env.server.model_copy(update={"fork": False})
        env.reset(seed=0)
        with pytest.raises(ForkError, match="cannot fork: it is an OpenEnv server without"):
            env.fork()
    finally:
        env.close()


def test_idle_sessions_are_closed_with_their_sandbox() -> None:
    with serving("treegym/PyCalc-v0", "--idle-timeout", "1") as server:
        env = RemoteEnv(server.url)
        env.reset(seed=0)
        import time

        time.sleep(3.5)
        with pytest.raises(EpisodeError, match="idle for more than 1 s"):
            env.step(call("python", code="print(1)"))
        env.close()
