"""A Gymnasium text space for what LLM agents read and write."""

from __future__ import annotations

import string
from typing import Any

from gymnasium import spaces

_SAMPLE_CHARSET = string.printable
_WHITESPACE_OK = frozenset("\n\t")


def is_printable_text(text: str) -> bool:
    """True for text a terminal shows as written: printable Unicode plus newlines and tabs."""
    return all(ch.isprintable() or ch in _WHITESPACE_OK for ch in text)


def to_printable(text: str) -> str:
    """Replace control characters (ANSI escapes, NULs, carriage returns) so tool output
    stays inside the observation space instead of corrupting a transcript."""
    if is_printable_text(text):
        return text
    return "".join(ch if ch.isprintable() or ch in _WHITESPACE_OK else "\N{REPLACEMENT CHARACTER}"
                   for ch in text)


class PrintableText(spaces.Text):
    """`spaces.Text` that admits any printable text, newlines included.

    Gymnasium's `Text` checks membership against a finite charset, which cannot list all of
    Unicode. Model output and tool output are arbitrary Unicode, so membership here is
    "printable, within length"; sampling still draws from ASCII printables, which is what
    `check_env` needs to poke an env with junk actions.
    """

    def __init__(self, max_length: int, *, min_length: int = 0, seed: Any = None) -> None:
        super().__init__(max_length, min_length=min_length, charset=_SAMPLE_CHARSET, seed=seed)

    def contains(self, x: Any) -> bool:
        return (
            isinstance(x, str)
            and self.min_length <= len(x) <= self.max_length
            and is_printable_text(x)
        )

    def __repr__(self) -> str:
        return f"PrintableText({self.min_length}, {self.max_length})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, PrintableText)
            and self.min_length == other.min_length
            and self.max_length == other.max_length
        )
