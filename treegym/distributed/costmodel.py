"""A cost model for distributed rollouts: leaves per second on 1 to 64 nodes.

Throughput is the smallest of four capacities, and the one that binds is the bottleneck:

- workers: each worker turns a chunk of tasks into leaves in
  `chunk leaves × (generation + exposed tool seconds per leaf) + Ray call overhead`;
  with a per-worker policy this grows with the number of workers;
- servers: with shared `openai:` servers, generation is capped by what the servers
  sustain, however many workers feed them;
- driver: one process deserializes and fsyncs every tree;
- learner: in synchronous training the rollout can't run faster than the learner eats.

A training step of `tasks_per_step` tasks also pays a tail: its chunks run in waves of
one per worker, and the last wave is partly idle once workers outnumber chunks.

The defaults are the figures measured on this 2-core machine (docs/scaling.md says how);
run `python -m treegym.distributed.costmodel` to print the table, or pass other inputs.
"""

from __future__ import annotations

import argparse
import json
import math

from pydantic import BaseModel, ConfigDict, Field


class CostInputs(BaseModel):
    """What one rollout costs where. Defaults: measured here, tiny model on CPU, Maze."""

    model_config = ConfigDict(extra="forbid")

    gen_seconds_per_leaf: float = Field(0.60, gt=0, description="Worker seconds per leaf.")
    tool_seconds_per_leaf: float = Field(0.0002, ge=0, description="Sandbox/tool time.")
    tool_overlap: float = Field(0.0, ge=0, le=1, description="Share of tool time hidden "
                                "behind generation (the engine overlaps them when >0).")
    call_overhead_seconds: float = Field(0.0056, ge=0, description="Ray round trip per chunk.")
    driver_seconds_per_tree: float = Field(0.0045, ge=0, description="Unpickle + fsync.")
    leaves_per_tree: float = Field(3.0, gt=0)
    trees_per_task: int = Field(2, ge=1)
    tasks_per_call: int = Field(1, ge=1)
    workers_per_node: int = Field(2, ge=1, description="One per core here; GPUs elsewhere.")
    servers: int = Field(0, ge=0, description="Shared openai: servers; 0 = per-worker policy.")
    server_leaves_per_s: float = Field(0.0, ge=0, description="What one shared server sustains.")
    learner_leaves_per_s: float = Field(0.0, ge=0, description="Learner intake; 0 = not bound.")
    tasks_per_step: int = Field(256, ge=1, description="Tasks per training step (tail effect).")


class Prediction(BaseModel):
    nodes: int
    workers: int
    leaves_per_s: float
    bottleneck: str
    tail_efficiency: float


def predict(inputs: CostInputs, nodes: int) -> Prediction:
    """Predicted steady rollout throughput on `nodes` nodes, and what limits it."""
    x = inputs
    workers = nodes * x.workers_per_node
    chunk_leaves = x.tasks_per_call * x.trees_per_task * x.leaves_per_tree
    per_leaf = x.gen_seconds_per_leaf + x.tool_seconds_per_leaf * (1 - x.tool_overlap)
    per_worker = chunk_leaves / (chunk_leaves * per_leaf + x.call_overhead_seconds)
    caps = {
        "workers": workers * per_worker,
        "driver": x.leaves_per_tree / x.driver_seconds_per_tree if x.driver_seconds_per_tree
        else math.inf,
    }
    if x.servers:
        caps["servers"] = x.servers * x.server_leaves_per_s
    if x.learner_leaves_per_s:
        caps["learner"] = x.learner_leaves_per_s
    bottleneck = min(caps, key=caps.__getitem__)
    chunks = math.ceil(x.tasks_per_step / x.tasks_per_call)
    tail = chunks / (workers * math.ceil(chunks / workers))
    return Prediction(nodes=nodes, workers=workers, bottleneck=bottleneck,
                      leaves_per_s=round(caps[bottleneck] * tail, 1),
                      tail_efficiency=round(tail, 3))


NODES = (1, 2, 4, 8, 16, 32, 64)


def table(inputs: CostInputs, nodes: tuple[int, ...] = NODES) -> list[Prediction]:
    return [predict(inputs, n) for n in nodes]


def main(argv: list[str] | None = None) -> None:
    """Print the 1-64 node table; `--set name=value` changes an input, `--json` prints JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    inputs = CostInputs(**dict(item.split("=", 1) for item in args.set))
    rows = table(inputs)
    if args.json:
        print(json.dumps({"inputs": inputs.model_dump(), "rows": [r.model_dump() for r in rows]}))
        return
    print(f"{'nodes':>5} {'workers':>7} {'leaves/s':>9} {'tail':>5}  bottleneck")
    for r in rows:
        print(f"{r.nodes:>5} {r.workers:>7} {r.leaves_per_s:>9.1f} {r.tail_efficiency:>5.2f}  "
              f"{r.bottleneck}")


if __name__ == "__main__":
    main()
