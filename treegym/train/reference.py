"""docs/training.md and `treegym train --print-config`, both generated from the models.

Written by hand, a reference drifts from the code within a release; generated from the
pydantic models it can't, and a test compares the file with this module's output.
Regenerate with `python -m treegym.train.reference > docs/training.md`.
"""

from __future__ import annotations

import textwrap
import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types as at
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import to_jsonable_python

from .collector import SEEDS_PER_BATCH, SEEDS_PER_RUN, batch_seed
from .config import TrainConfig
from .keys import Key, is_required, sections, variant, walk
from .loop import WARM_START_SEED
from .metrics import StepMetrics

REGENERATE = "python -m treegym.train.reference > docs/training.md"
_BOUNDS = ((at.Ge, "ge", "≥"), (at.Gt, "gt", ">"), (at.Le, "le", "≤"), (at.Lt, "lt", "<"),
           (at.MinLen, "min_length", "at least"))


def type_name(annotation: Any) -> str:
    """A field's type in words a YAML writer knows (no `|`, which would split a table)."""
    if annotation is type(None):
        return "null"
    origin, args = get_origin(annotation), get_args(annotation)
    if len(variants := sections(annotation)) > 1:
        return f"mapping with mode {' or '.join(str(variant(m)) for m in variants)}"
    if origin in (Union, types.UnionType):
        return " or ".join(type_name(a) for a in args)
    if origin is Literal:
        return ", ".join(map(str, args)) if len(args) == 1 else \
            f"one of {', '.join(map(str, args))}"
    if sections(annotation) or origin is dict:
        return "mapping"
    if origin is list:
        return f"list of {type_name(args[0])}"
    if origin is tuple:
        return f"[{', '.join(type_name(a) for a in args)}]"
    return "path" if annotation is Path else annotation.__name__


def bounds(field: FieldInfo) -> str:
    return ", ".join(f"{word} {getattr(m, attr)}" for m in field.metadata
                     for kind, attr, word in _BOUNDS if isinstance(m, kind))


def yaml_value(value: Any) -> str:
    """`value` as it is written in a YAML config, on one line."""
    text = yaml.safe_dump(to_jsonable_python(value), default_flow_style=True, width=10**6)
    return text.strip().removesuffix("...").strip()


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _default(key: Key) -> str:
    if is_required(key):
        return "required"
    if isinstance(key.default, BaseModel):
        return "see below"
    return f"`{yaml_value(key.default)}`"


def _keys_tables() -> list[str]:
    """One table per section, the top level first, in the order the models declare."""
    tables: dict[str, list[str]] = {}
    for key in walk(TrainConfig):
        title = key.section + (f" (mode: {key.mode})" if key.mode else "")
        kind = type_name(key.field.annotation)
        if limit := bounds(key.field):
            kind += f", {limit}"
        tables.setdefault(title, []).append(
            f"| `{key.path}` | {_cell(kind)} | {_cell(_default(key))} | "
            f"{_cell(key.field.description or '')} |")
    out = []
    for title, rows in tables.items():
        out += [f"### {title or 'Top level'}", "", "| key | type | default | meaning |",
                "| --- | --- | --- | --- |", *rows, ""]
    return out


def _metrics_table() -> list[str]:
    rows = [f"| `{name}` | {_cell(type_name(field.annotation))} | "
            f"{_cell(field.description or '')} |"
            for name, field in StepMetrics.model_fields.items()]
    return ["| field | type | meaning |", "| --- | --- | --- |", *rows]


def _prose(*paragraphs: str) -> list[str]:
    out = []
    for paragraph in paragraphs:
        out += [*textwrap.wrap(paragraph, 88, break_on_hyphens=False), ""]
    return out


def config_reference() -> str:
    """The text of docs/training.md."""
    example = TrainConfig(env="treegym/Maze-v0")
    first, second = batch_seed(example, 0), batch_seed(example, 1)
    return "\n".join([
        "# Training config reference",
        "",
        "Generated from the pydantic models; edit their field descriptions, not this file,",
        "and regenerate it with",
        "",
        "```",
        REGENERATE,
        "```",
        "",
        *_prose(
            "(tests/train/test_reference.py fails while the file and the models differ.)",
            "`treegym train CONFIG` reads one YAML (or JSON) file of these keys; only `env` is "
            "required. `treegym train --print-config` prints all of them with their defaults "
            "and meanings, as a file to start from. A nested key is set inside its section: "
            "`rollout: {mode: tree, m: 2}` sets `rollout.mode` and `rollout.m`. An unknown key "
            "is an error that names the close valid keys and every key at its level. "
            "`--ray ADDRESS`, `--workers N` and `--weight-sync MODE` override the file.",
        ),
        "## Keys",
        "",
        *_keys_tables(),
        "## Training and evaluation tasks: the seed split",
        "",
        *_prose(
            "Every batch is `tasks_per_step` fresh tasks. Batch s's tasks reset with seeds "
            f"`seed·{SEEDS_PER_RUN} + (s + 1)·{SEEDS_PER_BATCH} + i` for i < tasks_per_step, "
            f"so with `seed: 0` step 0's tasks start at seed {first}, step 1's at {second}, "
            "and so on. `treegym eval` plays seeds `--seed` to `--seed + N - 1`, from 0 by "
            f"default, so an evaluation of up to {SEEDS_PER_BATCH} tasks from seed 0 never "
            "resets with a seed that a `seed: 0` run trained on. Warm-start demonstrations "
            f"reset from {WARM_START_SEED} upwards. Keep `tasks_per_step` under "
            f"{SEEDS_PER_BATCH}, or batches share seeds.",
        ),
        "## When the reward never varies",
        "",
        *_prose(
            "GRPO-style advantages compare each episode with the others of its group (a "
            "task's leaves; a tree's for `tree_grpo_intra`). When every episode of a group "
            "gets the same reward, all its advantages are 0; when that holds for every group "
            "of a batch, the update learns nothing. Each step records the fraction of such "
            "groups (`zero_variance_groups`) and logs a warning when it is 1. After "
            "`stop_after_flat_steps` such steps in a row, training stops with a one-line "
            "error (exit status 3); the metrics and checkpoints written so far stay. To make "
            "the reward vary: more samples per group (`rollout.n`, or `rollout.m` and `k`), "
            "a denser reward (e.g. `env_kwargs: {shaped: true}` on Maze), a warm start "
            "(`warm_start.steps` or `init_weights`) or a higher `temperature`.",
        ),
        "## Metrics",
        "",
        *_prose(
            "`OUT/metrics.jsonl` gets one JSON object per RL step (and TensorBoard, when "
            "installed, the numeric ones). A resumed run first cuts the file back to its "
            "checkpoint's step. Warm-start steps are only shown on the console (`phase: "
            "warm_start`, `nll`, `grad_norm`), not written there.",
        ),
        *_metrics_table(),
        "",
    ])


def _comment(text: str, indent: str) -> list[str]:
    return textwrap.wrap(text, 88 - len(indent), initial_indent=f"{indent}# ",
                         subsequent_indent=f"{indent}# ")


def default_config_yaml() -> str:
    """Every key with its default and a `#` comment of its meaning: a valid config once
    `env` is filled in, for `treegym train --print-config`."""
    keys = list(walk(TrainConfig))
    by_path = {k.path: k for k in keys if k.mode is None}
    printed: set[str] = set()
    lines = _comment("treegym training config: every key at its default. Fill in env, drop "
                     "what you keep at its default, and run `treegym train FILE`. Generated "
                     "from the models, like docs/training.md.", "")
    for key in keys:
        parent = by_path.get(key.section)
        if parent is not None and not (
                parent.path in printed and isinstance(parent.default, BaseModel)
                and key.mode in (None, variant(type(parent.default)))):
            continue
        printed.add(key.path)
        indent = "  " * key.path.count(".")
        name = key.path.rsplit(".", 1)[-1]
        note = key.field.description or ""
        options = sections(key.field.annotation)
        if is_required(key):
            note += " Required."
        elif key.default is None and options:
            note += f" A mapping of: {', '.join(options[0].model_fields)}."
        elif len(options) > 1:
            others = [m for m in options if not isinstance(key.default, m)]
            note += "".join(f" Other mode: {variant(m)}, with keys "
                            f"{', '.join(m.model_fields)}." for m in others)
        lines += ["", *_comment(note, indent)] if not key.section else _comment(note, indent)
        if is_required(key) or isinstance(key.default, BaseModel):
            lines.append(f"{indent}{name}:")
        else:
            lines.append(f"{indent}{name}: {yaml_value(key.default)}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(config_reference(), end="")
