"""Maze-v0: seeded tasks, walls, goal reward, shaping and rendering."""

from __future__ import annotations

import pytest
from helpers import call

import treegym
from treegym.envs.maze import generate_maze


def walk(env: treegym.AgentEnv, moves: list[str]) -> list[tuple[str, float, bool, bool]]:
    return [env.step(call("move", direction=m))[:4] for m in moves]


@pytest.mark.parametrize("size", [2, 4, 7])
def test_solution_reaches_goal_for_reward_one(size: int) -> None:
    env = treegym.make("treegym/Maze-v0", size=size, max_turns=size * size)
    env.reset(seed=size)
    path = env.maze.path(env.position)
    steps = walk(env, path)
    assert steps[-1][1:] == (1.0, True, False)
    assert steps[-1][0].endswith("goal reached.")
    assert sum(s[1] for s in steps) == 1.0


def test_seed_names_one_maze_and_seeds_differ() -> None:
    env = treegym.make("treegym/Maze-v0", size=6)
    first = env.reset(seed=11)[1]["task"]
    assert env.reset(seed=11)[1]["task"] == first
    assert env.reset(seed=12)[1]["task"] != first


def test_mazes_are_perfect() -> None:
    import numpy as np

    maze = generate_maze(8, np.random.default_rng(0))
    passages = sum(len(cell) for row in maze.passages for cell in row) // 2
    assert passages == 8 * 8 - 1  # a spanning tree: connected and loop-free
    assert all(maze.distance((x, y)) >= 0 for x in range(8) for y in range(8))


def test_walls_block_and_say_so() -> None:
    env = treegym.make("treegym/Maze-v0")
    env.reset(seed=0)
    closed = next(d for d in ("north", "west") if d not in env.maze.open_from((0, 0)))
    obs, reward, *_ = env.step(call("move", direction=closed))
    assert obs == f"wall to the {closed}. at 0,0. open: {' '.join(env.maze.open_from((0, 0)))}."
    assert reward == 0.0 and env.position == (0, 0)


def test_moves_after_the_goal_in_the_same_turn_do_nothing() -> None:
    env = treegym.make("treegym/Maze-v0", size=2)
    env.reset(seed=0)
    path = env.maze.path(env.position)
    obs, reward, terminated, *_ = env.step(
        "".join(call("move", direction=d) for d in path + ["north"]))
    assert (reward, terminated) == (1.0, True) and obs.splitlines()[-1].endswith("goal reached.")


def test_shaped_reward_tracks_progress_and_totals_one() -> None:
    env = treegym.make("treegym/Maze-v0", size=5, shaped=True, max_turns=60)
    env.reset(seed=2)
    path = env.maze.path(env.position)
    first = env.step(call("move", direction=path[0]))[1]
    assert first == pytest.approx(1 / len(path))
    back = {"north": "south", "south": "north", "east": "west", "west": "east"}
    assert env.step(call("move", direction=back[path[0]]))[1] == pytest.approx(-1 / len(path))
    total = first - 1 / len(path) + sum(s[1] for s in walk(env, path))
    assert total == pytest.approx(1.0)


def test_giving_up_scores_zero_and_truncation_scores_zero() -> None:
    env = treegym.make("treegym/Maze-v0", max_turns=2)
    env.reset(seed=0)
    assert env.step("<answer>stuck</answer>")[1:4] == (0.0, True, False)
    env.reset(seed=0)
    env.step(call("look"))
    assert env.step(call("look"))[1:4] == (0.0, False, True)


def test_task_record_replays_the_same_maze() -> None:
    env = treegym.make("treegym/Maze-v0", size=5)
    _, info = env.reset(seed=9)
    other = treegym.make("treegym/Maze-v0", size=3)
    obs, _ = other.reset(options={"task": info["task"].model_dump()})
    assert other.maze == env.maze and obs == info["task"].prompt


def test_ansi_render_draws_agent_and_goal() -> None:
    env = treegym.make("treegym/Maze-v0", size=3, render_mode="ansi")
    env.reset(seed=1)
    art = env.render()
    lines = art.splitlines()
    assert len(lines) == 7 and lines[1].startswith("|A") and "G" in lines[5]
