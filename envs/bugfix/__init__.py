"""BugFix-v0: fix a generated Python repo so its tests pass."""

from .env import BugFixEnv

__all__ = ["BugFixEnv"]
