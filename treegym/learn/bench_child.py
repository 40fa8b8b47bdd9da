"""One side of `bench_learner` (packed or per-leaf), run in a spawned process of its own.

Why a process per side: the peak memory reported must be what a training step costs the
process, torch's CPU allocator included, which tracemalloc does not see; and a side must
not inherit the other's freed heap. On CPU the figure is Linux's high-water mark of the
process's resident set (VmHWM in /proc/self/status) after the step, minus its resident set
(VmRSS) right before, with the mark reset just before the step by writing 5 to
/proc/self/clear_refs, so model loading and earlier steps don't count. ru_maxrss can't be
reset, and in a spawned child it may start at the parent's peak. On CUDA the figure is
torch.cuda.max_memory_allocated above what was allocated before the step.

The parent drives the process through a one-worker executor: `setup` once, `step` per
timed step, `results` at the end; the worker keeps its model and batch in `_side`. On CPU
a side's address space is capped at what it maps after loading plus the memory available
then, so a step that cannot fit fails with the allocator's error (reported) instead of
waking the OOM killer.
"""

from __future__ import annotations

import ctypes
import gc
import resource
import time
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict

from . import forward
from .advantages import tree_grpo
from .cascade import ALIVE
from .learner import Learner
from .packing import pack, rows
from .synthetic import TreeShape

_side: dict[str, Any] = {}  # this worker's model, batch, advantages, learner, last metrics


class Side(BaseModel):
    """What one side needs to rebuild the same model and batch as the other side."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    policy: str
    shape: TreeShape
    tasks: int
    device: str | None
    seed: int
    packed: bool
    attention: Literal["auto", "cascade", "dense", "linear"] = "auto"
    alive_paths: float = ALIVE  # the packed side's walk budget (Learner)
    headroom_mb: int | None = None  # CPU address space past what setup maps; None: available


def setup(side: Side) -> tuple[int, int]:
    """Load the model and build the batch (token ids below the model's vocabulary);
    return its packed and per-leaf token counts, which depend on that vocabulary (random
    ids from a small one repeat, and repeated prefixes share a trie node)."""
    from .bench import bench_model

    forward.LINEAR_FROM = {"linear": 0, "auto": forward.LINEAR_FROM}.get(side.attention)
    model = bench_model(side.policy, device=side.device)
    batch = side.shape.trees(side.tasks, vocab=model.config.vocab_size, seed=side.seed)
    _side.update(model=model, batch=batch, advantages=tree_grpo(batch),
                 learner=Learner(model, packed=side.packed, cascade=side.attention != "dense",
                                 alive_paths=side.alive_paths))
    tokens = (sum(len(seq) for seq in pack(batch)), sum(len(seq) for seq in rows(batch)))
    if side.device in (None, "cpu"):
        headroom = side.headroom_mb or _kb_field("/proc/meminfo", "MemAvailable") / 1024
        limit = int((_status_mb("VmSize") + headroom) * 2**20)
        resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
    return tokens


def step() -> tuple[float, float] | str:
    """Wall seconds and peak MiB (see the module docstring) of one forward + backward, or
    the reason it could not run (out of memory)."""
    model, learner = _side["model"], _side["learner"]
    device = next(model.parameters()).device
    model.zero_grad(set_to_none=True)  # the step's own gradients count in its peak
    gc.collect()
    _release_heap()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device) / 2**20
    else:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        base = _status_mb("VmRSS")
    start = time.perf_counter()
    try:
        _side["metrics"] = learner.backward(_side["batch"], _side["advantages"])
    except (MemoryError, RuntimeError) as exc:  # torch's allocator raises RuntimeError
        model.zero_grad(set_to_none=True)
        return f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return time.perf_counter() - start, torch.cuda.max_memory_allocated(device) / 2**20 - base
    return time.perf_counter() - start, _status_mb("VmHWM") - base


def results() -> dict[str, Any]:
    """The last step's metrics and gradients and every kept leaf's action log-probs, as
    numpy arrays (pickled by value, not through torch's shared-memory handles)."""
    from .bench import leaf_logprobs

    model, learner = _side["model"], _side["learner"]
    found = {"device": str(next(model.parameters()).device),
             "dtype": str(next(model.parameters()).dtype).removeprefix("torch.")}
    if "metrics" not in _side:  # every step failed
        return found
    logprobs = leaf_logprobs(model, learner.sequences(_side["batch"]))
    return found | {
        "metrics": _side["metrics"],
        "grads": {n: p.grad.detach().float().cpu().numpy() for n, p in model.named_parameters()
                  if p.grad is not None},
        "logprobs": {leaf: lp.float().cpu().numpy() for leaf, lp in logprobs.items()},
    }


def _status_mb(field: str) -> float:
    """A `kB` field of /proc/self/status (VmRSS, VmHWM) in MiB."""
    return _kb_field("/proc/self/status", field) / 1024


def _kb_field(path: str, field: str) -> int:
    with open(path) as fh:
        line = next(line for line in fh if line.startswith(field + ":"))
    return int(line.split()[1])


def _release_heap() -> None:
    """Hand freed heap pages back to the OS (glibc), so the step starts from live data."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass

