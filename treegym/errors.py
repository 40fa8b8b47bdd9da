"""Errors users see. Each message names the problem and the way out."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable

import gymnasium


def close_matches(word: str, choices: Iterable[str], key: Callable[[str], str] = str.lower,
                  n: int = 3) -> list[str]:
    """The `choices` a mistyped `word` most likely meant, best first, so an error can say
    "did you mean" on the same line. `key` drops what should not count (case, a version
    suffix); every choice whose key is close comes back, so two versions of one env both do."""
    by_key: dict[str, list[str]] = {}
    for choice in choices:
        by_key.setdefault(key(choice), []).append(choice)
    best = difflib.get_close_matches(key(word), list(by_key), n=n, cutoff=0.6)
    return [choice for k in best for choice in by_key[k]]


class TreegymError(Exception):
    """Base of every error treegym raises on purpose; the CLI prints these in one line.

    `exit_code` is the CLI's exit status for it: 1, or 2 where the fix is in how the
    command was called (as for a usage error)."""

    exit_code: int = 1


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


class DistributedError(TreegymError, RuntimeError):
    """A distributed run that can't start or can't finish: no Ray, no workers, no retries."""


class ClusterError(DistributedError):
    """A cluster that can't be joined as given: a wrong address or a missing token.

    Like a bad flag, that is the caller's to fix, so the CLI exits 2."""

    exit_code = 2


class FlatRewardError(TreegymError, RuntimeError):
    """Training stopped because the reward never varied within any group for several steps
    in a row: every advantage was 0, so more steps would only spend compute.

    Its own exit status (3) lets a sweep tell "this config gives no learning signal" from
    a crash (1) or a bad command line (2)."""

    exit_code = 3
