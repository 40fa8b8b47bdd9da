"""The trainer: glue between rollouts (`treegym.rollout`) and the learner (`treegym.learn`)."""

from ..errors import ConfigError
from .compare import compare, plot
from .config import TrainConfig, load_config
from .loop import train

__all__ = ["ConfigError", "TrainConfig", "compare", "load_config", "plot", "train"]
