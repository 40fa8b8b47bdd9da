"""How long work reports how far it got: `progress(done, total, what)` after each step.

Benches and other long jobs take one of these rather than drawing bars themselves, so
the library stays free of terminal code and the CLI decides where a bar goes (stderr).
`total` is None for an open-ended count, such as tokens generated so far, whose rate is
what a reader wants to see.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

Progress = Callable[[int, int | None, str], None]


def silent(done: int, total: int | None, what: str) -> None:
    """The default: report nothing."""


def counter(progress: Progress, total: int, what: str) -> Callable[..., None]:
    """A callback (e.g. `on_tree`) that reports one more of `total` done each time it is
    called; it reports 0 done at once, so a bar appears before the first step ends."""
    done = itertools.count(1)
    progress(0, total, what)
    return lambda *_: progress(next(done), total, what)
