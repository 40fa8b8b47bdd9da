"""The registry sits on Gymnasium's, adds suggestions, and loads entry-point plugins."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import gymnasium
import pytest

import treegym
from treegym import ConfigError, UnknownEnvError


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


def test_unknown_id_with_nothing_close_lists_the_registered_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    known = treegym.list_envs()
    with pytest.raises(UnknownEnvError) as caught:
        treegym.spec("treegym/Nope-v0")
    message = str(caught.value)
    assert "Did you mean" not in message and "Run `treegym envs`" in message
    assert f"Registered: {', '.join(known)}." in message  # all of them while there are few
    maze = gymnasium.registry["treegym/Maze-v0"]
    for i in range(12):
        monkeypatch.setitem(gymnasium.registry, f"treegym/Zz{i:02d}-v0", maze)
    with pytest.raises(UnknownEnvError) as caught:
        treegym.spec("treegym/Nope-v0")
    listed = treegym.list_envs()
    shown = treegym.registry._LISTED_IDS
    assert f"Registered: {', '.join(listed[:shown])} and {len(listed) - shown} more." in str(
        caught.value)


def test_ids_outside_the_namespace_are_refused() -> None:
    with pytest.raises(ConfigError, match="use 'treegym/Mine-v0'"):
        treegym.register("Mine-v0", entry_point="x:Y")


def test_registered_kwargs_are_defaults_that_make_overrides() -> None:
    treegym.register("treegym/BigMaze-v0", entry_point="treegym.envs.maze:MazeEnv",
                     kwargs={"size": 9, "max_turns": 80})
    assert treegym.env_info("treegym/BigMaze-v0").max_turns == 80
    env = treegym.make("treegym/BigMaze-v0", size=3)
    try:
        assert (env.config.size, env.config.max_turns) == (3, 80)
    finally:
        env.close()


def _plugin(root: Path, name: str, body: str, target: str) -> None:
    (root / f"{name}.py").write_text(textwrap.dedent(body))
    dist = root / f"{name}-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[treegym.envs]\n{name} = {target}\n")


def test_third_party_envs_register_through_entry_points(tmp_path: Path) -> None:
    _plugin(tmp_path, "tg_plugin_ok", """
        import treegym
        def register_envs():
            treegym.register("treegym/PluginMaze-v0", entry_point="treegym.envs.maze:MazeEnv",
                             kwargs={"size": 3})
    """, "tg_plugin_ok:register_envs")
    _plugin(tmp_path, "tg_plugin_broken", """
        def register_envs():
            raise RuntimeError("boom")
    """, "tg_plugin_broken:register_envs")
    script = (
        "import warnings, gymnasium\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    import treegym\n"
        "print(sorted(treegym.list_envs()))\n"
        "print(gymnasium.make('treegym/PluginMaze-v0').unwrapped.config.size)\n"
        "print([str(w.message) for w in caught if 'plugin' in str(w.message)])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
    ).stdout.splitlines()
    assert "treegym/PluginMaze-v0" in out[0]
    assert out[1] == "3"
    assert "treegym plugin 'tg_plugin_broken' (tg_plugin_broken:register_envs) failed to load: " \
           "RuntimeError: boom" in out[2]
