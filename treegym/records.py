"""Pydantic records for what an episode produced, and their JSONL round-trip.

Records are plain data: the learner and the viewer read them from files, never from live
envs, so every field must survive `model_dump_json` → `model_validate_json` unchanged.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import RecordError


class Record(BaseModel):
    """Base of all records: unknown fields are an error, so typos in files surface early."""

    model_config = ConfigDict(extra="forbid")


class Task(Record):
    """One problem instance: what the agent is told, what counts as solved, how to set up."""

    id: str
    prompt: str
    answer: Any = Field(default=None, description="Ground truth used by the reward.")
    setup: dict[str, Any] = Field(default_factory=dict, description="How to build the world.")
    metadata: dict[str, Any] = Field(default_factory=dict)


class ToolCall(Record):
    """A call the model asked for, as parsed from its action (OpenAI function-call shape)."""

    id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class ToolResult(Record):
    """What a tool returned, or why the call was refused."""

    call_id: str
    name: str
    output: str
    error: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None

    def __eq__(self, other: object) -> bool:
        # Timing measures the machine, not the world: two runs of the same call on the
        # same world are the same result, which replay and `check_env` rely on.
        if not isinstance(other, ToolResult):
            return NotImplemented
        return self.model_dump(exclude={"seconds"}) == other.model_dump(exclude={"seconds"})

    __hash__ = None  # type: ignore[assignment]


class Turn(Record):
    """One agent turn: the action text, what it called, and what the world answered."""

    index: int
    action: str
    calls: list[ToolCall] = Field(default_factory=list)
    results: list[ToolResult] = Field(default_factory=list)
    answer: str | None = None
    parse_error: str | None = None
    observation: str
    reward: float = 0.0
    terminated: bool = False
    truncated: bool = False


class Episode(Record):
    """A whole chain trajectory: the task, the tools offered, and every turn."""

    env_id: str | None = None
    seed: int | None = None
    task: Task
    tools: list[dict[str, Any]] = Field(default_factory=list)
    turns: list[Turn] = Field(default_factory=list)

    @property
    def total_reward(self) -> float:
        return sum(turn.reward for turn in self.turns)

    @property
    def done(self) -> bool:
        return bool(self.turns) and (self.turns[-1].terminated or self.turns[-1].truncated)


class Origin(Record):
    """The expansion that made a node: the `index`-th branch of expansion round `round`.

    Nodes of a tree's first chain (the trunk) have none. It is the node's place in the
    tree that timing can't change, so the engine numbers and samples by it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    round: int = Field(ge=1)
    index: int = Field(ge=0)


MadeBy = Literal["policy", "human", "scripted"]
"""Who chose a node's action: a policy sampled it; a person typed it in `play`; or an env's
script (a demonstration) wrote it. Only policy-made log-probs are behaviour log-probs."""


def _migrate_branch(data: Any) -> Any:
    """Read a node written before `origin` and `made_by`, when one `branch` string said both.

    Files of that format held 'chain' or 'r{round}x{i}' from the engine, 'human', 'model'
    or 'auto' from play, and 'scripted' from demonstrations.
    """
    if not isinstance(data, dict) or "branch" not in data:
        return data
    data = dict(data)
    branch = data.pop("branch")
    expansion = re.fullmatch(r"r(\d+)x(\d+)", str(branch))
    if expansion:
        data.setdefault("origin", {"round": int(expansion[1]), "index": int(expansion[2])})
    elif branch not in ("chain", "human", "model", "auto", "scripted"):
        raise ValueError(f"unknown branch {branch!r} in a node of the old format")
    made_by = {"human": "human", "scripted": "scripted"}.get(branch, "policy")
    data.setdefault("made_by", made_by)
    return data


class Node(Record):
    """One agent turn of a rollout tree, with everything needed to train on it.

    `obs_ids` are the ids appended after the action: the close of the assistant turn,
    the observation turn, and the next assistant header. A leaf has none. A node's
    parent is None when it is the first turn after the prompt (the root is the prompt).
    Nodes are made by `rollout.TreeBuilder` from the env's `Turn`, whose fields they keep.
    """

    id: int
    parent: int | None
    depth: int = Field(ge=1)
    origin: Origin | None = Field(None, description="The expansion that made the node; "
                                  "None on the tree's first chain, and in play.")
    made_by: MadeBy = "policy"
    action_ids: list[int]
    action_logprobs: list[float]
    entropies: list[float] = Field(default_factory=list)
    finish_reason: str = "stop"
    obs_ids: list[int] = Field(default_factory=list)
    action: str = ""
    observation: str = ""
    calls: list[ToolCall] = Field(default_factory=list)
    results: list[ToolResult] = Field(default_factory=list)
    reward: float = 0.0
    terminated: bool = False
    truncated: bool = False
    error: str | None = Field(default=None, description="Why the branch failed, if it did.")
    gen_seconds: float = 0.0
    tool_seconds: float = 0.0

    @property
    def sampled(self) -> bool:
        """Whether a policy sampled this action, so its log-probs are behaviour log-probs."""
        return self.made_by == "policy"

    @model_validator(mode="before")
    @classmethod
    def _read_old_format(cls, data: Any) -> Any:
        return _migrate_branch(data)

    @property
    def is_leaf(self) -> bool:
        return self.terminated or self.truncated or self.error is not None

    @property
    def reason(self) -> str:
        if self.error is not None:
            return "error"
        return "terminated" if self.terminated else "truncated" if self.truncated else "open"


class Trajectory(BaseModel):
    """One leaf flattened: the ids a chain would have produced, and which ones were sampled."""

    leaf: int
    ids: list[int]
    action_mask: list[bool] = Field(description="True where the policy sampled the token.")
    logprobs: list[float] = Field(description="Behaviour log-probs; 0.0 off the action mask.")
    reward: float
    reason: str


class Tree(Record):
    """One task's rollout tree: the prompt is the root, nodes are turns, leaves end episodes.

    A chain rollout is a tree with one leaf. `kept` lists the leaves chosen for training
    (Tree-GRPO keeps k per tree); the learner reads only those paths.
    """

    env_id: str
    env_kwargs: dict[str, Any] = Field(default_factory=dict, description="Options of make().")
    task: Task
    task_index: int
    tree_index: int
    seed: int
    mode: Literal["tree", "chain"]
    policy: str
    policy_version: int | None = Field(
        None, description="Optimizer steps the rollout weights had seen; None outside training. "
        "A trainer running one step off policy collects batch s with version s - 1."
    )
    tools: list[dict[str, Any]] = Field(default_factory=list)
    prompt_ids: list[int]
    nodes: list[Node] = Field(default_factory=list)
    kept: list[int] = Field(default_factory=list)
    advantages: dict[int, float] = Field(
        default_factory=dict, description="Node id -> advantage, once a learner computed it: "
        "the trainer's trees.jsonl holds learn.advantages.node_advantages (a kept leaf its "
        "own, an inner node the sum over the kept leaves below it)."
    )

    @property
    def leaves(self) -> list[int]:
        return [n.id for n in self.nodes if n.is_leaf]

    def path(self, node_id: int) -> list[Node]:
        """The nodes from the first turn down to `node_id`."""
        by_id = {n.id: n for n in self.nodes}
        path = []
        current: int | None = node_id
        while current is not None:
            node = by_id[current]
            path.append(node)
            current = node.parent
        return path[::-1]

    def reward(self, leaf: int) -> float:
        """The return of a leaf's episode: the sum of its turns' rewards."""
        return sum(node.reward for node in self.path(leaf))

    def trajectory(self, leaf: int) -> Trajectory:
        ids = list(self.prompt_ids)
        mask = [False] * len(ids)
        logprobs = [0.0] * len(ids)
        for node in self.path(leaf):
            ids += node.action_ids + node.obs_ids
            mask += [node.sampled] * len(node.action_ids) + [False] * len(node.obs_ids)
            logprobs += node.action_logprobs + [0.0] * len(node.obs_ids)
        return Trajectory(leaf=leaf, ids=ids, action_mask=mask, logprobs=logprobs,
                          reward=self.reward(leaf), reason=self.path(leaf)[-1].reason)

    def trajectories(self) -> list[Trajectory]:
        """The kept leaves as full trajectories, in `kept` order."""
        return [self.trajectory(leaf) for leaf in self.kept]


R = TypeVar("R", bound=BaseModel)


def write_jsonl(path: str | Path, records: Iterable[BaseModel | dict[str, Any]], *,
                append: bool = True) -> int:
    """Write one record (a model, or a plain dict) per line, flushing and fsyncing each,
    so an interrupted run, or a crash of the machine, keeps every line it wrote whole."""
    path = Path(path)
    count = 0
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a" if append else "w", encoding="utf-8") as fh:
            for record in records:
                line = (record.model_dump_json() if isinstance(record, BaseModel)
                        else json.dumps(record))
                fh.write(line + "\n")
                fh.flush()
                os.fsync(fh.fileno())
                count += 1
    except OSError as exc:
        raise RecordError(
            f"cannot write records to {path}: {exc.strerror}; choose a writable path"
        ) from exc
    return count


def read_jsonl(path: str | Path, model: type[R]) -> Iterator[R]:
    """Yield records from a JSONL file; a bad line raises `RecordError` naming file and line."""
    path = Path(path)
    try:
        fh = path.open(encoding="utf-8")
    except OSError as exc:
        raise RecordError(f"cannot read records from {path}: {exc.strerror}") from exc
    with fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                yield model.model_validate_json(line)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"]) or "record"
                raise RecordError(
                    f"{path}:{lineno}: not a valid {model.__name__} ({where}: {first['msg']})"
                ) from exc
