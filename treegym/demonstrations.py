"""Scripted answers for envs whose episode is one final answer, for `demonstration()`.

A warm start on right answers only would teach the task as well as the format, and leave
RL nothing to find; near misses keep the format and the answer's shape (an integer of
about the right size) while being wrong.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .parsing import answer_text

OFFSETS = (-3, -2, -1, 1, 2, 3)


def near_miss(answer: str, rng: np.random.Generator, choices: Sequence[str] = ()) -> str:
    """A wrong integer within 3 of an integer `answer`, or another of `choices` for any
    other answer. Without choices a non-integer comes back as it is: there is no generic
    wrong version of a word or a grid that still looks plausible."""
    try:
        return str(int(answer.strip()) + int(rng.choice(OFFSETS)))
    except ValueError:
        others = [c for c in choices if c != answer]
        return str(rng.choice(others)) if others else answer


def answer_demonstration(answer: str, rng: np.random.Generator, optimal: float,
                         choices: Sequence[str] = ()) -> list[str]:
    """One `<answer>` action: `answer` with probability `optimal`, else a near miss."""
    right = rng.random() < optimal
    return [answer_text(answer if right else near_miss(answer, rng, choices))]
