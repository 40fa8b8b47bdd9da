"""The `treegym` command line, one module per command group. Bad input ends in one clear
line and a non-zero exit (`base.main`)."""

from . import bench, build, episodes, serve, train  # noqa: F401 - each registers its commands
from .base import app, main

__all__ = ["app", "main"]
