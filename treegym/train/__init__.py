"""The trainer: glue between rollouts (`treegym.rollout`) and the learner (`treegym.learn`)."""

from ..errors import ConfigError
from .compare import compare
from .compare_report import CompareReport, plot
from .config import CompareConfig, TrainConfig, load_config
from .loop import train

__all__ = ["CompareConfig", "CompareReport", "ConfigError", "TrainConfig", "compare",
           "load_config", "plot", "train"]
