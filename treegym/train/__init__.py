"""The trainer: glue between rollouts (`treegym.rollout`) and the learner (`treegym.learn`)."""

from .config import ConfigError, TrainConfig, load_config
from .loop import train

__all__ = ["ConfigError", "TrainConfig", "load_config", "train"]
