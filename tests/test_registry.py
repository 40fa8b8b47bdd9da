"""The registry sits on Gymnasium's: ids in any package's namespace, only AgentEnvs listed,
suggestions for a mistyped id from every namespace. Plugins: see test_plugins.py."""

from __future__ import annotations

from collections.abc import Iterator

import gymnasium
import pytest

import treegym
from treegym import ConfigError, UnknownEnvError
from treegym.envs.maze import MazeEnv


@pytest.fixture
def scratch() -> Iterator[None]:
    """Registrations a test makes are undone afterwards, so other tests see the usual ids."""
    ids, registered = dict(gymnasium.registry), set(treegym.registry._REGISTERED)
    yield
    gymnasium.registry.clear()
    gymnasium.registry.update(ids)
    treegym.registry._REGISTERED.clear()
    treegym.registry._REGISTERED.update(registered)


def test_bundled_envs_are_listed_and_described() -> None:
    assert "treegym/Maze-v0" in treegym.list_envs()
    info = treegym.env_info("treegym/Maze-v0")
    assert info.tools == ["look", "move"] and info.max_turns == 24 and not info.needs_sandbox


def test_unknown_id_names_the_closest_ones() -> None:
    with pytest.raises(UnknownEnvError, match=r"unknown env id 'treegym/Maez-v0'\. Did you mean "
                       r"treegym/Maze-v0"):
        treegym.make("treegym/Maez-v0")
    with pytest.raises(gymnasium.error.UnregisteredEnv):  # Gymnasium's except clauses still work
        treegym.spec("treegym/Nothing-v9")
    with pytest.raises(UnknownEnvError, match="Did you mean treegym/Maze-v0"):
        treegym.make("maze-v0")


def test_unknown_id_with_nothing_close_lists_the_registered_ones(scratch: None) -> None:
    known = treegym.list_envs()
    with pytest.raises(UnknownEnvError) as caught:
        treegym.spec("treegym/Nope-v0")
    message = str(caught.value)
    assert "Did you mean" not in message and "Run `treegym envs`" in message
    assert f"Registered: {', '.join(known)}." in message  # all of them while there are few
    for i in range(treegym.registry._LISTED_IDS):
        treegym.register(f"filler/Zz{i:02d}-v0", entry_point=MazeEnv)
    with pytest.raises(UnknownEnvError) as caught:
        treegym.spec("treegym/Nope-v0")
    listed = treegym.list_envs()
    shown = treegym.registry._LISTED_IDS
    assert f"Registered: {', '.join(listed[:shown])} and {len(listed) - shown} more." in str(
        caught.value)


def test_any_package_namespace_registers_lists_and_makes(scratch: None) -> None:
    treegym.register("newcomer/Maze-v3", entry_point=MazeEnv, kwargs={"size": 3})
    assert {"newcomer/Maze-v3", "treegym/Maze-v0"} <= set(treegym.list_envs())
    assert treegym.env_info("newcomer/Maze-v3").tools == ["look", "move"]
    env = treegym.make("newcomer/Maze-v3")
    try:
        assert env.config.size == 3 and env.spec.id == "newcomer/Maze-v3"
    finally:
        env.close()
    with pytest.raises(UnknownEnvError, match="Did you mean newcomer/Maze-v3, treegym/Maze-v0"):
        treegym.spec("other/Maez-v1")  # suggestions come from every namespace


@pytest.mark.parametrize(("bad", "suggested"), [
    ("Mine-v0", "mylab/Mine-v0"), ("acme/Mine", "acme/Mine-v0"), ("acme/Mine-v", "acme/Mine-v0"),
    ("a/b/Mine-v0", "mylab/Mine-v0"), ("acme/-v0", "acme/Name-v0"),
    ("my lab/Mi ne-v0", "mylab/Mine-v0")])
def test_ids_not_of_the_form_namespace_name_version_are_refused(bad: str, suggested: str) -> None:
    with pytest.raises(ConfigError) as caught:
        treegym.register(bad, entry_point=MazeEnv)
    assert str(caught.value) == (f"env id {bad!r} is not of the form 'namespace/Name-vN': use "
                                 f"your package's namespace and a version, e.g. '{suggested}'")
    assert bad not in gymnasium.registry


def test_only_agent_envs_are_listed_not_other_gymnasium_envs(scratch: None) -> None:
    assert "CartPole-v1" in gymnasium.registry and "CartPole-v1" not in treegym.list_envs()
    with pytest.raises(UnknownEnvError, match="It is a Gymnasium env, not a treegym one"):
        treegym.spec("CartPole-v1")
    gymnasium.register("direct/Maze-v0", entry_point=MazeEnv)  # a class: no import to check
    assert "direct/Maze-v0" in treegym.list_envs()


def test_registered_kwargs_are_defaults_that_make_overrides() -> None:
    treegym.register("treegym/BigMaze-v0", entry_point="treegym.envs.maze:MazeEnv",
                     kwargs={"size": 9, "max_turns": 80})
    assert treegym.env_info("treegym/BigMaze-v0").max_turns == 80
    env = treegym.make("treegym/BigMaze-v0", size=3)
    try:
        assert (env.config.size, env.config.max_turns) == (3, 80)
    finally:
        env.close()
