"""HumanEval-v0: complete one of HumanEval's 164 functions; its own check() is the reward."""

from .env import HumanEvalEnv

__all__ = ["HumanEvalEnv"]
