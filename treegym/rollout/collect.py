"""`collect`: roll out tasks with a sampler and a policy, streaming finished trees.

Each finished tree goes to a `TreeSink` (sink.py), which fsyncs it to the output file
before the next one starts counting, so Ctrl-C or a crash leaves a valid file of whole
trees, and `resume=True` carries on from where the file ends. `max_live_trees` makes
trees finish (and reach the file) early in a long run instead of all together at its end.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..policy import ChatRenderer, Policy, SamplingParams
from ..progress import Progress, silent
from ..records import Tree
from ..registry import make
from .engine import STEP_TIMEOUT, Branch, Engine, TreeRun
from .samplers import Sampler
from .sink import RolloutResult, TreeSink


def check_tools_rendered(prompt: str, task_text: str, tools: Sequence[dict[str, Any]], *,
                          env_id: str, template: str) -> None:
    """Refuse a prompt that names none of the env's tools.

    A model that is never shown its tools can't call them, and the run would look like a
    weak policy rather than a broken prompt. Names are looked for outside the task's own
    text, which often mentions them (Maze's says "use look() and move(direction)").
    """
    names = [t["function"]["name"] for t in tools]
    rest = prompt.replace(task_text, "")
    if names and not any(name in rest for name in names):
        raise ConfigError(
            f"the prompt rendered for {env_id} names none of its tools ({', '.join(names)}): "
            f"the chat template of {template} dropped them, so the model would never learn "
            "they exist. Use a checkpoint whose chat template renders `tools` (or one that "
            "ignores them entirely, and treegym writes them into the system turn itself), "
            "or fix the tools block of its `chat_template`"
        )


def collect(
    env_id: str,
    policy: Policy,
    sampler: Sampler,
    tasks: int | Sequence[int],
    *,
    seed: int = 0,
    params: SamplingParams | None = None,
    env_kwargs: dict[str, Any] | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    policy_name: str | None = None,
    policy_version: int | None = None,
    max_branches: int = 32,
    max_live_trees: int | None = None,
    workers: int = 4,
    step_timeout: float = STEP_TIMEOUT,
    on_tree: Any = None,
    progress: Progress = silent,
) -> RolloutResult:
    """Roll out `tasks` tasks (reset seeds `seed + i`) and return their trees and costs.

    `tasks` may instead list the task indices to roll out; they get the same seeds as in a
    run of all tasks, which is how distributed workers split a run.

    New trees start while fewer than `max_branches` branches are live, which bounds memory
    (each branch holds a KV prefix and a world) and keeps generate batches about as full
    in tree mode as in chain mode. `max_live_trees` (None: no bound) also bounds the trees
    in flight, so the first tasks finish and stream to `out` while later ones wait, at
    the price of smaller batches near each tree's end.

    `step_timeout` is the engine's watchdog on one env step: a step still running after
    it ends its branch with an error and its env closed.

    `progress` hears of trees and leaves done and of tokens generated (an open-ended
    count, total None) after every engine step.
    """
    if max_live_trees is not None and max_live_trees < 1:
        raise ConfigError(f"max_live_trees must be at least 1 (or None for no bound), "
                          f"not {max_live_trees}")
    params = params or SamplingParams()
    env_kwargs = dict(env_kwargs or {})
    sink = TreeSink(out, resume=resume, on_tree=on_tree)
    sink.begin()
    skip = set(sink.written)
    task_indices = range(tasks) if isinstance(tasks, int) else tasks
    todo = deque(
        (task, tree) for task in task_indices for tree in range(sampler.trees_per_task)
        if (task, tree) not in skip
    )
    chat = ChatRenderer(policy.tokenizer)
    template = getattr(policy.tokenizer, "name_or_path", "") or type(policy.tokenizer).__name__
    name = policy_name or policy.backend
    stats = sink.stats
    ledger_before = policy.ledger.model_copy()
    trees_total = len(todo)
    leaves_total = trees_total * sampler.leaves_per_tree

    def report() -> None:
        progress(engine.leaves, leaves_total, "leaves")
        progress(policy.ledger.generated - ledger_before.generated, None, "generated tokens")

    def tree_done(run: TreeRun) -> None:
        nonlocal leaves_total
        sink.add(run.record)
        leaves_total -= sampler.leaves_per_tree - len(run.record.leaves)  # lost expansions
        progress(len(sink.trees), trees_total, "trees")

    def room() -> bool:
        return engine.live_branches < max_branches and (
            max_live_trees is None or engine.live_trees < max_live_trees)

    def next_trees() -> list[Branch]:
        started = []
        while todo and room():
            task_index, tree_index = todo.popleft()
            env = make(env_id, **env_kwargs)
            try:
                obs, info = env.reset(seed=seed + task_index)
                prompt_ids = chat.prompt_ids([{"role": "user", "content": obs}], info["tools"])
                check_tools_rendered(policy.tokenizer.decode(prompt_ids), obs, info["tools"],
                                     env_id=env_id, template=template)
                run = TreeRun(
                    record=Tree(
                        env_id=env_id, env_kwargs=env_kwargs, task=info["task"],
                        task_index=task_index,
                        tree_index=tree_index, seed=seed + task_index, mode=sampler.mode,
                        policy=name, policy_version=policy_version, tools=info["tools"],
                        prompt_ids=prompt_ids,
                    ),
                    sampler=sampler,
                    rng=np.random.default_rng([seed, task_index, tree_index]),
                )
                started.append(engine.start_tree(run, env, prompt_ids))
            except BaseException:
                env.close()
                raise
        return started

    engine = Engine(policy, params, workers=workers, on_tree_done=tree_done,
                    next_trees=next_trees, on_step=report, step_timeout=step_timeout)
    progress(0, trees_total, "trees")
    report()
    start = time.perf_counter()
    try:
        engine.run()
    finally:
        engine.close()
        stats.wall_seconds = time.perf_counter() - start
        stats.gen_seconds = engine.gen_seconds
        stats.generated_tokens = policy.ledger.generated - ledger_before.generated
        stats.prefilled_tokens = policy.ledger.prefilled - ledger_before.prefilled
        stats.cached_tokens = policy.ledger.cached - ledger_before.cached
    return sink.result()
