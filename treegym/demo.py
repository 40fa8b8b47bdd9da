"""The main job on embedded defaults: a scripted Maze episode that forks half-way.

It shows the core promise on the smallest scale: the trunk runs once, the fork carries
the world to the branch point, and the two branches then diverge without seeing each
other. Later pipelines (policies, tree rollouts, training) grow from this.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from .parsing import answer_text, tool_call_text
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


def run_demo(out: Path, *, env_id: str = "treegym/Maze-v0", seed: int = 0, size: int = 5
             ) -> tuple[DemoResult, list[Episode]]:
    """Walk half the shortest path, fork, then let one branch solve and one give up."""
    env = make(env_id, size=size, render_mode="ansi")
    try:
        env.reset(seed=seed)
        path = env.maze.path(env.position)
        branch_turn = len(path) // 2
        env.step(tool_call_text("look", {}))
        for direction in path[:branch_turn]:
            env.step(tool_call_text("move", {"direction": direction}))
        wanderer = env.fork()
        try:
            for direction in path[branch_turn:]:
                env.step(tool_call_text("move", {"direction": direction}))
            back = {"north": "south", "south": "north", "east": "west", "west": "east"}
            wanderer.step(tool_call_text("move", {"direction": back[path[branch_turn - 1]]}))
            wanderer.step(answer_text("I give up"))
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
