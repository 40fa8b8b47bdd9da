"""The main job on embedded defaults: a scripted Maze episode that forks half-way.

It shows the core promise on the smallest scale: the trunk runs once, the fork carries
the world to the branch point, and the two branches then diverge without seeing each
other. Later pipelines (policies, tree rollouts, training) grow from this.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from .records import Episode, write_jsonl
from .registry import make


class DemoResult(BaseModel):
    env_id: str
    seed: int
    branch_turn: int
    solver_reward: float
    wanderer_reward: float
    solver_turns: int
    wanderer_turns: int
    out: str


def _call(name: str, **arguments: str) -> str:
    return f"<tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>"


def run_demo(out: Path, *, env_id: str = "treegym/Maze-v0", seed: int = 0, size: int = 5
             ) -> tuple[DemoResult, list[Episode]]:
    """Walk half the shortest path, fork, then let one branch solve and one give up."""
    env = make(env_id, size=size, render_mode="ansi")
    try:
        env.reset(seed=seed)
        path = env.maze.path(env.position)
        branch_turn = len(path) // 2
        env.step(_call("look"))
        for direction in path[:branch_turn]:
            env.step(_call("move", direction=direction))
        wanderer = env.fork()
        try:
            for direction in path[branch_turn:]:
                env.step(_call("move", direction=direction))
            back = {"north": "south", "south": "north", "east": "west", "west": "east"}
            wanderer.step(_call("move", direction=back[path[branch_turn - 1]]))
            wanderer.step("<answer>I give up</answer>")
            episodes = [env.episode(), wanderer.episode()]
        finally:
            wanderer.close()
    finally:
        env.close()
    write_jsonl(out, episodes, append=False)
    result = DemoResult(
        env_id=env_id, seed=seed, branch_turn=branch_turn + 1,
        solver_reward=episodes[0].total_reward, wanderer_reward=episodes[1].total_reward,
        solver_turns=len(episodes[0].turns), wanderer_turns=len(episodes[1].turns),
        out=str(out),
    )
    return result, episodes
