"""`treegym/RG-<dataset>-v0`: a reasoning-gym problem, a python tool, the dataset's own scorer.

One env class serves every dataset: its config names the dataset and that dataset's
config, so registering another dataset is one `register` call with kwargs, and the
Task record keeps the reasoning-gym entry, so any record can be scored again.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from treegym.demonstrations import answer_demonstration
from treegym.parsing import parse_action, tool_call_text
from treegym.records import Task
from treegym.sandbox_env import PythonSandboxEnv, SandboxConfig

from . import source

HOW_TO_ANSWER = ("You may run Python with the python tool. "
                 "Give your final answer between <answer> and </answer>.")
_SEEDS = 2**31  # reasoning-gym seeds item i with `seed + i`; keep the sum an ordinary int


class ReasoningGymConfig(SandboxConfig):
    dataset: str = Field(description="reasoning-gym dataset name, e.g. 'chain_sum'.")
    dataset_config: dict[str, Any] = Field(
        default_factory=dict,
        description="Fields of the dataset's config dataclass. Given to make(), it replaces "
                    "the registered one whole; fields left out take reasoning-gym's defaults.",
    )
    max_turns: int = Field(4, ge=1)


class ReasoningGymEnv(PythonSandboxEnv):
    """Solve a reasoning-gym problem, with a Python interpreter to hand."""

    Config = ReasoningGymConfig
    config: ReasoningGymConfig
    description = "reasoning-gym problems with a persistent python(code) tool; dataset-scored."

    def __init__(self, render_mode: str | None = None, **options: Any) -> None:
        super().__init__(render_mode=render_mode, **options)
        # A misspelt dataset or field should fail at make(), not at the first reset.
        source.open_dataset(self.config.dataset, self.config.dataset_config, seed=0)

    def make_task(self, rng: np.random.Generator, options: dict[str, Any]) -> Task:
        dataset, config = self.config.dataset, self.config.dataset_config
        seed = int(rng.integers(_SEEDS))
        entry = source.draw(dataset, config, seed)
        return Task(
            id=f"{dataset}-{seed}",
            prompt=f"{entry['question'].rstrip()}\n\n{HOW_TO_ANSWER}",
            answer=entry["answer"],
            metadata={"dataset": dataset, "dataset_config": config, "seed": seed,
                      "entry": entry},
        )

    def score(self, answer: str) -> float:
        return score_task(self.task, answer)

    def demonstration(self, rng: np.random.Generator, optimal: float = 1.0) -> list[str]:
        """The answer alone, right or a near miss. A right answer to a dataset that
        records its arithmetic `expression` (chain_sum, basic_arithmetic, ...) is first
        worked out with the python tool when there are turns for it, so a warm start also
        shows the tool earning the reward; a near miss never uses the tool."""
        actions = answer_demonstration(str(self.task.answer), rng, optimal)
        expression = self.task.metadata["entry"].get("metadata", {}).get("expression")
        right = parse_action(actions[0]).answer == str(self.task.answer)
        if right and expression and self.config.max_turns - self.turn >= 2:
            actions.insert(0, tool_call_text("python", {"code": f"print({expression})"}))
        return actions


def score_task(task: Task, answer: str) -> float:
    """Score `answer` for a task this env made, from its record alone (for rescoring)."""
    meta = task.metadata
    return source.score(meta["dataset"], meta["dataset_config"], meta["seed"], answer,
                        meta["entry"])
