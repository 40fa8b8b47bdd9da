"""The one place that talks to reasoning-gym: checking names and configs, drawing, scoring.

reasoning-gym is optional and takes seconds to import, so it is imported here, on first
use, never when treegym is imported. Every failure it can raise for a bad name or config
becomes a one-line ConfigError that says what to type instead.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from types import ModuleType
from typing import Any

from treegym.errors import ConfigError

INSTALL_HINT = "pip install 'treegym[tasks]'"
_SUGGESTED = 3  # an unknown-dataset error names at most this many close names
_SET_PER_TASK = ("seed", "size")  # every task is its own one-item dataset, seeded by the env


def load() -> ModuleType:
    """The `reasoning_gym` module, or a ConfigError that says how to install it."""
    try:
        import reasoning_gym
    except ImportError as exc:
        raise ConfigError(f"reasoning-gym can't be imported ({exc}); {INSTALL_HINT}") from None
    return reasoning_gym


def config_class(dataset: str) -> type:
    """The config dataclass of `dataset`; an unknown name lists the closest real ones."""
    datasets: dict[str, tuple[type, type]] = load().factory.DATASETS
    if dataset in datasets:
        return datasets[dataset][1]
    close = difflib.get_close_matches(dataset, list(datasets), n=_SUGGESTED, cutoff=0.6)
    hint = f"Did you mean {', '.join(close)}?" if close else "No name is close."
    raise ConfigError(
        f"unknown reasoning-gym dataset {dataset!r}. {hint} All {len(datasets)}: "
        "python -c 'import reasoning_gym as r; print(sorted(r.factory.DATASETS))'"
    )


def open_dataset(dataset: str, config: dict[str, Any], seed: int) -> Any:
    """A one-item reasoning-gym dataset whose item is the task for `seed`.

    Item i of a reasoning-gym dataset comes from `seed + i` alone, so a one-item dataset
    per task is both reproducible and cheap: nothing else is generated or kept.
    """
    fields = [f.name for f in dataclasses.fields(config_class(dataset))
              if f.name not in _SET_PER_TASK]
    clash = sorted(set(config) & set(_SET_PER_TASK))
    if clash:
        raise ConfigError(f"dataset_config for {dataset!r} can't set {', '.join(clash)}: "
                          "treegym draws one item per task from the env's seed")
    try:
        return load().create_dataset(dataset, size=1, seed=seed, **config)
    except (TypeError, ValueError, AssertionError) as exc:  # dataclass kwargs, validate()
        raise ConfigError(f"invalid dataset_config for reasoning-gym {dataset!r}: {exc} "
                          f"(fields: {', '.join(fields)})") from None


def draw(dataset: str, config: dict[str, Any], seed: int) -> dict[str, Any]:
    """The item (`question`, `answer`, `metadata`) that `seed` gives."""
    return dict(open_dataset(dataset, config, seed)[0])


CALL = re.compile(r"[A-Za-z_]\w*\s*\(")


def score(dataset: str, config: dict[str, Any], seed: int, answer: str,
          entry: dict[str, Any]) -> float:
    """The dataset's own `score_answer` for `answer`; 0.0 when the scorer chokes on it.

    Some scorers raise on malformed text (prime_factorization's int() on a word,
    boxnet's parser), but a model's answer must never crash an episode. Some evaluate it
    on this host: countdown's runs sympy's `parse_expr`, which is Python `eval`, so
    `__import__("os").system(...)` as an answer ran here. No answer that could call a
    function (a name followed by `(`, or a dunder) reaches a scorer; it scores 0. That
    refuses answers such as `f(x)` too, which no registered dataset expects.
    """
    if CALL.search(answer) or "__" in answer:
        return 0.0
    scorer = open_dataset(dataset, config, seed)
    try:
        return float(scorer.score_answer(answer, entry))
    except Exception:  # noqa: BLE001 - third-party parsing of model output
        return 0.0
