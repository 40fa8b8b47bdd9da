"""`bench_learner`: packed-tree vs per-leaf training steps on a synthetic Tree-GRPO batch.

Both sides run the same loss on the same trees with the same model (fp32 on CPU, bf16 on
CUDA): per-leaf feeds each kept leaf as its own causal row, packed feeds each task's
trie once. One "step" is forward + backward over the whole batch; the optimizer update
is left out because it costs the same on both sides. Each side runs in a spawned process
of its own (bench_child.py says how its peak memory is read); steps alternate between
the two so machine noise hits both. The diffs compare the two sides' log-probs and
gradients. `ideal_speedup` is per-leaf tokens / packed tokens, what packing would gain if
a step's cost were proportional to its tokens; `fraction_of_ideal` is how much of that
the measured speedup reaches.

The `tiny` policy is the tiny checkpoint's architecture re-initialised at the usual 0.02
scale: the tiny checkpoint's own 0.1 init drives activations past 100, where fp32
rounding alone moves a log-prob by more than 1e-5 (per-leaf fp32 against fp64 differs by
~5e-5 there), which would hide what packing itself changes. `smollm2` and `hf:PATH` load
real weights, to measure a real architecture (SmolLM2-135M has 30 layers).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..progress import Progress, counter, silent
from . import bench_child
from .cascade import ALIVE
from .forward import score
from .learner import Learner
from .packing import LeafRef, PackedSequence, rows
from .synthetic import SHAPES, TreeShape

ATTENTION = ("auto", "cascade", "dense", "linear")
INIT_RANGE = 0.02  # the re-initialised tiny model's weight scale (see the module docstring)


def bench_model(
    policy: str = "tiny", device: str | None = None, dtype: torch.dtype | None = None
) -> torch.nn.Module:
    """The model `policy` names, SDPA attention: `tiny` with fresh seeded weights, or
    `smollm2` / `hf:PATH` with their own."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from ..policy import tiny_path

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = dtype or (torch.bfloat16 if device.startswith("cuda") else torch.float32)
    if policy != "tiny":
        model = AutoModelForCausalLM.from_pretrained(policy_path(policy),
                                                     attn_implementation="sdpa", dtype=dtype)
        return model.to(device=device)
    config = AutoConfig.from_pretrained(tiny_path())
    config.initializer_range = INIT_RANGE
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")
    return model.to(device=device, dtype=dtype)


def policy_path(policy: str) -> Path:
    """The checkpoint folder of `smollm2` or `hf:PATH` (PATH may be tiny or smollm2)."""
    from ..policy.spec import BUILT, _model_path

    target = policy.removeprefix("hf:")
    if policy in BUILT or (policy.startswith("hf:") and target):
        return _model_path(target)
    raise ValueError(f"unknown bench policy {policy!r}; use tiny, smollm2 or hf:PATH")


def bench_shape(shape: str | TreeShape, tokens_per_turn: int | None = None) -> TreeShape:
    """`shape` (a name in SHAPES, or a TreeShape), with `tokens_per_turn` generated tokens a
    turn when given."""
    if isinstance(shape, str):
        if shape not in SHAPES:
            raise ValueError(f"unknown bench shape {shape!r}; use one of: {', '.join(SHAPES)}")
        shape = SHAPES[shape]
    if tokens_per_turn is None:
        return shape
    return TreeShape.model_validate(shape.model_dump() | {"action_tokens": tokens_per_turn})


def bench_attention(attention: str) -> str:
    """`attention` if it names a packed-side path (ATTENTION)."""
    if attention not in ATTENTION:
        raise ValueError(f"unknown attention {attention!r}; use one of: {', '.join(ATTENTION)}")
    return attention


def max_rel_grad_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """max over parameter tensors of max|a - b| / max|b|: scale-free, zero-safe."""
    return max(float((a[n] - b[n]).abs().max() / b[n].abs().max().clamp_min(1e-30)) for n in b)


def leaf_logprobs(
    model: torch.nn.Module, sequences: Iterable[PackedSequence]
) -> dict[LeafRef, torch.Tensor]:
    """Every kept leaf's action log-probs, read from whichever sequence holds its path."""
    out = {}
    with torch.no_grad():
        for seq in sequences:
            logp = score(model, seq)[0]
            for j, leaf in enumerate(seq.leaves):
                out[leaf] = logp[seq.below[:, j]]
    return out


def max_logprob_diff(a: dict[LeafRef, torch.Tensor], b: dict[LeafRef, torch.Tensor]) -> float:
    """The largest |a - b| over every action token of every leaf in `b`."""
    return max(float((a[leaf] - b[leaf]).abs().max()) for leaf in b)


def max_abs_logprob_diff(model: torch.nn.Module, learner: Learner, trees) -> float:
    """The largest |packed - per-leaf| log-prob over every action token of every kept leaf."""
    return max_logprob_diff(leaf_logprobs(model, learner.sequences(trees)),
                            leaf_logprobs(model, rows(trees)))


def bench_learner(
    shape: str | TreeShape = "paper",
    *,
    tasks: int = 8,
    tokens_per_turn: int | None = None,
    policy: str = "tiny",
    attention: str = "auto",
    alive_paths: float | None = None,
    headroom_mb: int | None = None,
    repeats: int = 2,
    device: str | None = None,
    seed: int = 0,
    progress: Progress = silent,
) -> dict[str, Any]:
    """Time one packed and one per-leaf forward+backward over the same synthetic batch;
    each side's best of `repeats` after a warm-up step, and its highest peak.

    `attention` picks the packed side's path: auto (the learner's own choice: by segments
    below forward.LINEAR_FROM packed tokens, memory-linear from there), cascade, dense
    (one pass under the [T, T] mask) or linear; `alive_paths` the walk's budget
    (Learner; None: cascade.ALIVE).
    A side that runs out of
    memory (on CPU: more than `headroom_mb` past what it maps once loaded, by default the
    memory available) is reported as `<side>_error`, with no figures.
    """
    name = shape if isinstance(shape, str) else "custom"
    shape = bench_shape(shape, tokens_per_turn)
    if policy != "tiny":
        policy_path(policy)  # a bad name fails here, before two processes load a model
    bench_attention(attention)
    alive_paths = alive_paths or ALIVE
    sides = {"packed": True, "per_leaf": False}
    step = counter(progress, (repeats + 1) * len(sides), "training steps")
    best = {side: (float("inf"), 0.0) for side in sides}
    errors: dict[str, str] = {}
    context = multiprocessing.get_context("spawn")
    with ExitStack() as stack:
        pools = {side: stack.enter_context(ProcessPoolExecutor(1, mp_context=context))
                 for side in sides}
        loading = [pools[side].submit(bench_child.setup, bench_child.Side(
            policy=policy, shape=shape, tasks=tasks, device=device, seed=seed, packed=packed,
            attention=attention, alive_paths=alive_paths, headroom_mb=headroom_mb))
            for side, packed in sides.items()]
        packed_tokens, per_leaf_tokens = [future.result() for future in loading][0]
        for repeat in range(repeats + 1):  # repeat 0 warms allocator, kernels and caches
            for side in sides:
                if side not in errors:
                    ran = pools[side].submit(bench_child.step).result()
                    if isinstance(ran, str):
                        errors[side] = ran
                    elif repeat:
                        best[side] = (min(best[side][0], ran[0]), max(best[side][1], ran[1]))
                step()
        out = {side: pools[side].submit(bench_child.results).result() for side in sides}
    ideal = per_leaf_tokens / packed_tokens
    report: dict[str, Any] = {
        "device": out["packed"]["device"],
        "dtype": out["packed"]["dtype"],
        "policy": policy,
        "shape": name,
        "attention": attention,
        "alive_paths": alive_paths,
        "batch": f"{tasks} tasks x {shape.m} trees x {shape.leaves} leaves, "
                 f"{shape.turns} turns of {shape.action_tokens} tokens",
        "packed_tokens": packed_tokens,
        "per_leaf_tokens": per_leaf_tokens,
        "shared_fraction": round(1 - packed_tokens / per_leaf_tokens, 3),
        "ideal_speedup": round(ideal, 3),
    }
    for side in sides:
        if side in errors:
            report[f"{side}_error"] = errors[side]
        else:
            report[f"{side}_step_s"] = round(best[side][0], 4)
            report[f"{side}_peak_mb"] = round(best[side][1], 1)
    if errors:
        return report
    speedup = best["per_leaf"][0] / best["packed"][0]
    return report | {
        "speedup": round(speedup, 3),
        "fraction_of_ideal": round(speedup / ideal, 3),
        "max_abs_logprob_diff": max_logprob_diff(*(_tensors(out[s]["logprobs"]) for s in sides)),
        "max_rel_grad_diff": max_rel_grad_diff(*(_tensors(out[s]["grads"]) for s in sides)),
    }


def _tensors(arrays: dict[Any, np.ndarray]) -> dict[Any, torch.Tensor]:
    return {key: torch.from_numpy(value) for key, value in arrays.items()}
