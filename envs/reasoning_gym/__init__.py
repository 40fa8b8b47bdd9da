"""reasoning-gym's procedural datasets as treegym envs (needs `pip install 'treegym[tasks]'`)."""

from .env import ReasoningGymConfig, ReasoningGymEnv, score_task
from .registration import env_id, register_reasoning_gym

__all__ = ["ReasoningGymConfig", "ReasoningGymEnv", "env_id", "register_reasoning_gym",
           "score_task"]
