"""Generated buggy repos: a few small functions, their tests, and one injected bug.

Each function lists the bugs it can carry as exact text substitutions, labelled by kind,
so a seed picks the functions, the buggy one and the kind of bug reproducibly, and a test
can check that every bug is caught by the suite and every fix passes it.
"""

from __future__ import annotations

from textwrap import dedent

import numpy as np
from pydantic import BaseModel

from treegym.records import Task


class Bug(BaseModel):
    kind: str
    old: str
    new: str


class Function(BaseModel):
    name: str
    source: str
    tests: list[str]
    bugs: list[Bug]


def _fn(name: str, source: str, tests: list[str], bugs: list[tuple[str, str, str]]) -> Function:
    return Function(name=name, source=dedent(source).strip() + "\n", tests=tests,
                    bugs=[Bug(kind=k, old=o, new=n) for k, o, n in bugs])


POOL: list[Function] = [
    _fn("clamp", """
        def clamp(x, lo, hi):
            \"\"\"x limited to the range [lo, hi].\"\"\"
            return max(lo, min(x, hi))
        """, ["clamp(5, 0, 10) == 5", "clamp(-1, 0, 10) == 0", "clamp(11, 0, 10) == 10"],
        [("swapped_call", "max(lo, min(x, hi))", "min(lo, max(x, hi))")]),
    _fn("sum_to", """
        def sum_to(n):
            \"\"\"1 + 2 + ... + n.\"\"\"
            return sum(range(1, n + 1))
        """, ["sum_to(1) == 1", "sum_to(10) == 55", "sum_to(0) == 0"],
        [("off_by_one", "range(1, n + 1)", "range(1, n)")]),
    _fn("is_leap", """
        def is_leap(year):
            \"\"\"Whether a Gregorian year has 366 days.\"\"\"
            return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
        """, ["is_leap(2000) is True", "is_leap(1900) is False", "is_leap(2024) is True",
              "is_leap(2023) is False"],
        [("wrong_constant", "year % 400 == 0", "year % 300 == 0"),
         ("wrong_operator", "year % 100 != 0 or", "year % 100 != 0 and")]),
    _fn("mean", """
        def mean(xs):
            \"\"\"The average of xs; 0.0 for an empty list.\"\"\"
            if not xs:
                return 0.0
            return sum(xs) / len(xs)
        """, ["mean([1, 2]) == 1.5", "mean([]) == 0.0", "mean([4]) == 4"],
        [("missing_edge_case", "    if not xs:\n        return 0.0\n", ""),
         ("wrong_operator", "sum(xs) / len(xs)", "sum(xs) // len(xs)")]),
    _fn("count_vowels", """
        def count_vowels(text):
            \"\"\"How many of the letters are vowels, upper or lower case.\"\"\"
            return sum(1 for ch in text.lower() if ch in "aeiou")
        """, ["count_vowels('Hello') == 2", "count_vowels('AEIOU') == 5",
              "count_vowels('xyz') == 0"],
        [("case_bug", "text.lower()", "text")]),
    _fn("max_index", """
        def max_index(xs):
            \"\"\"The index of the largest item, the first one on ties.\"\"\"
            best = 0
            for i in range(1, len(xs)):
                if xs[i] > xs[best]:
                    best = i
            return best
        """, ["max_index([1, 3, 2]) == 1", "max_index([5, 5]) == 0", "max_index([7]) == 0",
              "max_index([1, 2, 9]) == 2"],
        [("wrong_comparison", "xs[i] > xs[best]", "xs[i] >= xs[best]"),
         ("off_by_one", "range(1, len(xs))", "range(1, len(xs) - 1)")]),
    _fn("factorial", """
        def factorial(n):
            \"\"\"n! for n >= 0.\"\"\"
            result = 1
            for i in range(2, n + 1):
                result *= i
            return result
        """, ["factorial(0) == 1", "factorial(1) == 1", "factorial(5) == 120"],
        [("off_by_one", "range(2, n + 1)", "range(2, n)")]),
    _fn("reverse_words", """
        def reverse_words(text):
            \"\"\"The words of text in reverse order, single-spaced.\"\"\"
            return " ".join(reversed(text.split()))
        """, ["reverse_words('a b c') == 'c b a'",
              "reverse_words('  hello   world ') == 'world hello'"],
        [("wrong_call", "text.split()", "text.split(' ')")]),
    _fn("is_palindrome", """
        def is_palindrome(text):
            \"\"\"Whether text reads the same backwards, ignoring case and punctuation.\"\"\"
            cleaned = [ch.lower() for ch in text if ch.isalnum()]
            return cleaned == cleaned[::-1]
        """, ["is_palindrome('Racecar') is True",
              "is_palindrome('A man, a plan, a canal: Panama') is True",
              "is_palindrome('abc') is False"],
        [("case_bug", "ch.lower() for ch", "ch for ch")]),
]

MODULE = "lib.py"
TESTS = "test_lib.py"
README = """\
# lib

Small utility functions in `lib.py`, tested by `test_lib.py`.
Run the tests with `python3 run_tests.py` (or `python3 -m pytest` if pytest is installed).
"""


def module_text(functions: list[Function]) -> str:
    return '"""Small utility functions."""\n\n\n' + "\n\n".join(f.source for f in functions)


def case_names(functions: list[Function]) -> list[str]:
    return [f"test_{fn.name}_{i}" for fn in functions for i in range(len(fn.tests))]


def suite_text(functions: list[Function]) -> str:
    lines = [f"from lib import {', '.join(f.name for f in functions)}", ""]
    checks = [check for fn in functions for check in fn.tests]
    for name, check in zip(case_names(functions), checks, strict=True):
        lines += ["", f"def {name}():", f"    assert {check}", ""]
    return "\n".join(lines)


def make_repo(rng: np.random.Generator, n_functions: int, kinds: list[str] | None) -> Task:
    """A repo whose suite fails because of one bug, of a kind drawn from `kinds`."""
    eligible = [f for f in POOL if any(kinds is None or b.kind in kinds for b in f.bugs)]
    buggy = eligible[int(rng.integers(len(eligible)))]
    bugs = [b for b in buggy.bugs if kinds is None or b.kind in kinds]
    bug = bugs[int(rng.integers(len(bugs)))]
    others = [f for f in POOL if f.name != buggy.name]
    picks = rng.choice(len(others), size=min(n_functions - 1, len(others)), replace=False)
    functions = sorted([buggy, *(others[int(i)] for i in picks)], key=lambda f: f.name)
    fixed = module_text(functions)
    broken = fixed.replace(bug.old, bug.new, 1)
    prompt = (
        f"The tests in {TESTS} fail because of a bug in {MODULE}. Find and fix it, then run "
        "`python3 run_tests.py` to check. Tools: bash(cmd), read(path), "
        "edit(path, old, new). Answer <answer>done</answer> when the tests pass."
    )
    return Task(
        id=f"bugfix-{buggy.name}-{bug.kind}-{int(rng.integers(2**32)):08x}",
        prompt=prompt,
        answer=fixed,
        setup={"files": {MODULE: broken, TESTS: suite_text(functions), "README.md": README},
               "test_ids": [f"{TESTS}::{name}" for name in case_names(functions)]},
        metadata={"function": buggy.name, "kind": bug.kind},
    )
