"""Errors users see. Each message names the problem and the way out."""

from __future__ import annotations

import gymnasium


class TreegymError(Exception):
    """Base of every error treegym raises on purpose; the CLI prints these in one line."""


class UnknownEnvError(TreegymError, gymnasium.error.UnregisteredEnv):
    """An env id that nobody registered. Subclasses Gymnasium's own error for `except` users."""


class ConfigError(TreegymError, ValueError):
    """Invalid keyword arguments for an env, or an invalid config file."""


class EpisodeError(TreegymError, RuntimeError):
    """An env used out of order: stepped before reset, after the end, or after close."""


class ForkError(TreegymError, RuntimeError):
    """An env's state could not be copied into a branch."""


class RecordError(TreegymError, ValueError):
    """A records file that does not parse; the message gives the file and line."""
