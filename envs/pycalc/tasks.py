"""PyCalc task generators: arithmetic, integer series and small CSV data questions.

Every answer is an exact integer or word computed here in Python, so grading is exact
string comparison after light normalisation; the model gets a `python` tool to compute.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable

import numpy as np

from treegym.records import Task

REGIONS = ["north", "south", "east", "west"]
PRODUCTS = ["apple", "pear", "plum", "fig", "kiwi"]


def arithmetic(rng: np.random.Generator) -> Task:
    a, b, c, d, e = (int(rng.integers(lo, hi)) for lo, hi in
                     [(100, 999), (10, 99), (5, 60), (1000, 9999), (3, 17)])
    expr = f"({a} * {b}) - {c} ** 2 + {d} // {e}"
    value = (a * b) - c**2 + d // e
    return Task(id="", prompt=f"Compute {expr}. Answer with the integer only.",
                answer=str(value), metadata={"kind": "arithmetic"})


def series(rng: np.random.Generator) -> Task:
    n, k = int(rng.integers(50, 500)), int(rng.integers(3, 12))
    total = sum(i * i for i in range(1, n + 1) if i % k == 0)
    return Task(
        id="",
        prompt=f"What is the sum of the squares of the integers from 1 to {n} that are "
               f"divisible by {k}? Answer with the integer only.",
        answer=str(total), metadata={"kind": "series"},
    )


def _sales(rng: np.random.Generator) -> tuple[str, list[dict[str, int | str]]]:
    rows: list[dict[str, int | str]] = [
        {"region": REGIONS[int(rng.integers(4))], "product": PRODUCTS[int(rng.integers(5))],
         "units": int(rng.integers(1, 50)), "price": int(rng.integers(2, 30))}
        for _ in range(int(rng.integers(20, 60)))
    ]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["region", "product", "units", "price"])
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue(), rows


def revenue(rng: np.random.Generator) -> Task:
    text, rows = _sales(rng)
    region = REGIONS[int(rng.integers(4))]
    total = sum(int(r["units"]) * int(r["price"]) for r in rows if r["region"] == region)
    return Task(
        id="",
        prompt=f"The file sales.csv lists sales (region, product, units, price). What is the "
               f"total revenue, units times price, for region {region}? Answer with the "
               "integer only.",
        answer=str(total), setup={"files": {"sales.csv": text}}, metadata={"kind": "revenue"},
    )


def top_product(rng: np.random.Generator) -> Task:
    while True:
        text, rows = _sales(rng)
        units = {p: sum(int(r["units"]) for r in rows if r["product"] == p) for p in PRODUCTS}
        ranked = sorted(units.values(), reverse=True)
        if ranked[0] != ranked[1]:  # a unique answer, so exact grading is fair
            break
    best = max(units, key=lambda p: units[p])
    return Task(
        id="",
        prompt="The file sales.csv lists sales (region, product, units, price). Which "
               "product sold the most units in total? Answer with the product name only.",
        answer=best, setup={"files": {"sales.csv": text}}, metadata={"kind": "top_product"},
    )


GENERATORS: dict[str, Callable[[np.random.Generator], Task]] = {
    "arithmetic": arithmetic,
    "series": series,
    "revenue": revenue,
    "top_product": top_product,
}


def make_task(rng: np.random.Generator, kinds: list[str]) -> Task:
    kind = kinds[int(rng.integers(len(kinds)))]
    task = GENERATORS[kind](rng)
    return task.model_copy(update={"id": f"pycalc-{kind}-{int(rng.integers(2**32)):08x}"})


def normalise(answer: str) -> str:
    """Forgive what doesn't change the value: case, spaces, quotes, a final period and
    thousands separators."""
    text = answer.strip().strip("\"'`").rstrip(".").strip().lower()
    digits = text.replace(",", "").replace("_", "")
    return digits if digits.lstrip("-").isdigit() else text
