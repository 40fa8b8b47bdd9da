"""`treegym/Maze-v0`: walk a text gridworld to the goal with `look()` and `move()`.

Observations are short and regular on purpose, so a small model can learn the task: every
tool answers with the agent's position and the open directions, in the same words.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field

from treegym.env import AgentEnv, EnvConfig
from treegym.parsing import tool_call_text
from treegym.records import Task
from treegym.tools import tool

from .tasks import Cell, Maze, generate_maze

Direction = Literal["north", "south", "east", "west"]


class MazeConfig(EnvConfig):
    size: int = Field(4, ge=2, le=32, description="Side of the square maze; sets difficulty.")
    shaped: bool = Field(False, description="Reward progress toward the goal every turn.")
    max_turns: int = Field(24, ge=1)


class MazeEnv(AgentEnv):
    """Find the way through a maze to its goal."""

    Config = MazeConfig
    config: MazeConfig
    description = "Walk a text maze to the goal; reward 1 on reaching it."

    maze: Maze
    position: Cell
    reached: bool

    def make_task(self, rng: np.random.Generator, options: dict[str, Any]) -> Task:
        size = self.config.size
        maze = generate_maze(size, rng)
        gx, gy = maze.goal
        prompt = (
            f"Maze {size}x{size}. You are at 0,0. The goal is at {gx},{gy}. "
            "x grows east, y grows south. Use look() and move(direction) with direction "
            "north, south, east or west."
        )
        return Task(
            id=f"maze-{size}-{rng.integers(2**32):08x}",
            prompt=prompt,
            answer=maze.distance(maze.start),
            setup={"maze": maze.model_dump(mode="json")},
        )

    def setup(self, task: Task) -> None:
        self.maze = Maze.model_validate(task.setup["maze"])
        self.position = self.maze.start
        self.reached = False
        self._distance = self.maze.distance(self.position)
        self._start_distance = max(self._distance, 1)

    def _where(self) -> str:
        x, y = self.position
        if self.reached:
            return f"at {x},{y}. goal reached."
        return f"at {x},{y}. open: {' '.join(self.maze.open_from(self.position))}."

    @tool
    def look(self) -> str:
        """Report your position and the open directions."""
        return self._where()

    @tool
    def move(self, direction: Direction) -> str:
        """Move one cell.

        Args:
            direction: north, south, east or west.
        """
        if self.reached:
            return self._where()
        nxt = self.maze.neighbour(self.position, direction)
        if nxt is None:
            return f"wall to the {direction}. {self._where()}"
        self.position = nxt
        self.reached = nxt == self.maze.goal
        return f"moved {direction}. {self._where()}"

    def turn_reward(self) -> float:
        before, self._distance = self._distance, self.maze.distance(self.position)
        if self.config.shaped:
            return (before - self._distance) / self._start_distance
        return 1.0 if before > 0 and self._distance == 0 else 0.0

    def is_terminal(self) -> bool:
        return self.reached

    def render_text(self) -> str:
        return self.maze.draw(self.position)

    def demonstration(self, rng: np.random.Generator, optimal: float = 1.0) -> list[str]:
        """Moves to the goal or out of turns: shortest-path moves with probability
        `optimal`, otherwise a random open direction (never into a wall)."""
        position, moves = self.position, []
        while position != self.maze.goal and self.turn + len(moves) < self.config.max_turns:
            if rng.random() < optimal:
                direction = self.maze.path(position)[0]
            else:
                direction = str(rng.choice(self.maze.open_from(position)))
            moves.append(tool_call_text("move", {"direction": direction}))
            position = self.maze.neighbour(position, direction)
        return moves
