"""`bench_learner`: packed-tree vs per-leaf training steps on a paper-shaped batch.

Both sides run the same loss on the same trees with the same model (fp32 on CPU, bf16 on
CUDA): per-leaf feeds each kept leaf as its own causal row, packed feeds each task's
trie once. One "step" is forward + backward over the whole batch; the optimizer update
is left out because it costs the same on both sides. The diffs compare the two sides'
log-probs and gradients. The model is the tiny checkpoint's architecture re-initialised
at the usual 0.02 scale: the tiny checkpoint's own 0.1 init drives activations past 100,
where fp32 rounding alone moves a log-prob by more than 1e-5 (per-leaf fp32 against
fp64 differs by ~5e-5 there), which would hide what packing itself changes.
"""

from __future__ import annotations

import ctypes
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import torch

from ..progress import Progress, counter, silent
from .advantages import tree_grpo
from .forward import score
from .learner import Learner
from .packing import rows
from .synthetic import synthetic_trees


def bench_model(
    init_range: float = 0.02, device: str | None = None, dtype: torch.dtype | None = None
) -> torch.nn.Module:
    """The tiny architecture with fresh weights, seeded, SDPA attention."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from ..policy import tiny_path

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = dtype or (torch.bfloat16 if device.startswith("cuda") else torch.float32)
    config = AutoConfig.from_pretrained(tiny_path())
    config.initializer_range = init_range
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")
    return model.to(device=device, dtype=dtype)


class _PeakRSS:
    """Peak resident memory above the level at entry, sampled every millisecond (CPU).

    PyTorch's CPU allocator hands large blocks back to the OS when freed, so the resident
    set follows live tensors closely enough to compare two ways of running one step.
    """

    def __enter__(self) -> _PeakRSS:
        self.base = self.peak = _rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stop.wait(0.001):
            self.peak = max(self.peak, _rss_mb())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_mb())

    @property
    def mb(self) -> float:
        return self.peak - self.base


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _release_heap() -> None:
    """Hand freed heap pages back to the OS (glibc), so the next peak starts from live data."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def _measure(fn: Callable[[], Any], device: torch.device) -> tuple[float, float]:
    """Wall time of one call of `fn` and the memory it needed above what was live before."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    _release_heap()
    with _PeakRSS() as rss:
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - start
    if device.type == "cuda":
        return seconds, (torch.cuda.max_memory_allocated(device) - base) / 2**20
    return seconds, rss.mb


def _race(
    fns: dict[str, Callable[[], Any]], device: torch.device, repeats: int,
    progress: Progress = silent,
) -> dict[str, tuple[float, float]]:
    """Best time and peak memory of each fn; runs alternate so machine noise hits both."""
    step = counter(progress, (repeats + 1) * len(fns), "training steps")
    for fn in fns.values():
        fn()  # warm-up: allocator, kernels, caches
        step()
    best = {name: (float("inf"), 0.0) for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            seconds, mb = _measure(fn, device)
            best[name] = (min(best[name][0], seconds), max(best[name][1], mb))
            step()
    return best


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().float().clone() for n, p in model.named_parameters()
            if p.grad is not None}


def max_rel_grad_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """max over parameter tensors of max|a - b| / max|b|: scale-free, zero-safe."""
    return max(float((a[n] - b[n]).abs().max() / b[n].abs().max().clamp_min(1e-30)) for n in b)


def max_abs_logprob_diff(model: torch.nn.Module, learner: Learner, trees) -> float:
    """The largest |packed - per-leaf| log-prob over every action token of every kept leaf."""
    with torch.no_grad():
        alone = {r.leaves[0]: score(model, r)[0] for r in rows(trees)}
        worst = 0.0
        for seq in learner.sequences(trees):
            logp = score(model, seq)[0]
            for j, leaf in enumerate(seq.leaves):
                worst = max(worst, float((logp[seq.below[:, j]] - alone[leaf]).abs().max()))
    return worst


def bench_learner(
    tasks: int = 8,
    trees: int = 2,
    leaves: int = 3,
    *,
    prompt_tokens: int = 80,
    turns: int = 3,
    action_tokens: int = 16,
    obs_tokens: int = 8,
    repeats: int = 2,
    device: str | None = None,
    seed: int = 0,
    progress: Progress = silent,
) -> dict[str, Any]:
    """Time one packed and one per-leaf forward+backward over the same synthetic batch."""
    model = bench_model(device=device)
    dev = next(model.parameters()).device
    batch = synthetic_trees(tasks, trees, leaves, prompt_tokens=prompt_tokens, turns=turns,
                            action_tokens=action_tokens, obs_tokens=obs_tokens, seed=seed)
    advantages = tree_grpo(batch)
    packed, per_leaf = Learner(model, packed=True), Learner(model, packed=False)

    def run(learner: Learner) -> dict[str, float]:
        model.zero_grad(set_to_none=True)
        return learner.backward(batch, advantages)

    grads = {}

    def side(learner: Learner, name: str) -> Callable[[], None]:
        def fn() -> None:
            run(learner)
            grads[name] = _grads(model)
        return fn

    timed = _race({"packed": side(packed, "packed"), "per_leaf": side(per_leaf, "per_leaf")},
                  dev, repeats, progress)
    (packed_s, packed_mb), (per_leaf_s, per_leaf_mb) = timed["packed"], timed["per_leaf"]
    packed_grads, per_leaf_grads = grads["packed"], grads["per_leaf"]
    metrics = run(packed)
    return {
        "device": str(dev),
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "batch": f"{tasks} tasks x {trees} trees x {leaves} leaves",
        "packed_tokens": int(metrics["tokens"]),
        "per_leaf_tokens": int(metrics["row_tokens"]),
        "shared_fraction": round(1 - metrics["tokens"] / metrics["row_tokens"], 3),
        "packed_step_s": round(packed_s, 4),
        "per_leaf_step_s": round(per_leaf_s, 4),
        "speedup": round(per_leaf_s / packed_s, 3),
        "packed_peak_mb": round(packed_mb, 1),
        "per_leaf_peak_mb": round(per_leaf_mb, 1),
        "max_abs_logprob_diff": max_abs_logprob_diff(model, packed, batch),
        "max_rel_grad_diff": max_rel_grad_diff(packed_grads, per_leaf_grads),
    }
