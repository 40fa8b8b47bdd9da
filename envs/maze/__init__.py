"""Maze-v0: a text gridworld in pure-Python state."""

from .env import MazeEnv
from .tasks import Maze, generate_maze

__all__ = ["Maze", "MazeEnv", "generate_maze"]
