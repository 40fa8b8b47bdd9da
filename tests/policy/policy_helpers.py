"""Prompts shared by the policy tests: ordinary text ids, and stop strings that decode.

`DEVICE` is where the transformers backend runs: TREEGYM_TEST_DEVICE, default cpu
(scripts/gpu_check.sh sets cuda).
"""

from __future__ import annotations

import os

DEVICE = os.environ.get("TREEGYM_TEST_DEVICE", "cpu")


def prompt(tokenizer, n: int, salt: str = "") -> list[int]:
    """`n` ids of maze-like text; a different `salt` gives a different prompt."""
    text = f"{salt}Walk the maze: north, east, then look around. " * 60
    ids = tokenizer.encode(text, add_special_tokens=False)[:n]
    assert len(ids) == n
    return ids


def clean_stop(tokenizer, ids: list[int]) -> str:
    """Two printable ASCII chars the text reaches early: no half-decoded UTF-8 bytes."""
    for k in range(2, len(ids)):
        tail = tokenizer.decode(ids[:k])[-2:]
        if len(tail) == 2 and tail.isascii() and tail.isprintable():
            return tail
    raise AssertionError("no printable stop string in the free run")
