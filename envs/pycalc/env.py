"""`treegym/PyCalc-v0`: word problems solved with a persistent `python` tool.

The interpreter keeps its variables between turns, so a fork mid-episode must carry the
interpreter's memory, not just files: this env is the simplest test of that promise.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field

from treegym.demonstrations import answer_demonstration
from treegym.records import Task
from treegym.sandbox_env import PythonSandboxEnv, SandboxConfig

from .tasks import GENERATORS, PRODUCTS, make_task, normalise

Kind = Literal["arithmetic", "series", "revenue", "top_product"]


class PyCalcConfig(SandboxConfig):
    kinds: list[Kind] = Field(default_factory=lambda: list(GENERATORS), min_length=1,
                              description="Which problem kinds to draw from.")
    max_turns: int = Field(8, ge=1)


class PyCalcEnv(PythonSandboxEnv):
    """Answer arithmetic and data questions with a Python interpreter."""

    Config = PyCalcConfig
    config: PyCalcConfig
    description = "Word problems solved with a persistent python(code) tool; exact answers."

    def make_task(self, rng: np.random.Generator, options: dict[str, Any]) -> Task:
        return make_task(rng, list(self.config.kinds))

    def setup(self, task: Task) -> None:
        for path, text in task.setup.get("files", {}).items():
            self.box.write_file(path, text)

    def score(self, answer: str) -> float:
        return 1.0 if normalise(answer) == normalise(str(self.task.answer)) else 0.0

    def demonstration(self, rng: np.random.Generator, optimal: float = 1.0) -> list[str]:
        return answer_demonstration(str(self.task.answer), rng, optimal, choices=PRODUCTS)
