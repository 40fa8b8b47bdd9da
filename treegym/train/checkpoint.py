"""Checkpoints that resume exactly: weights, optimizer, RNG, counters and the next batch.

Trees are deterministic for a fixed seed with the hf backend, but not bitwise across
backends or machines (vLLM's kernels, another CPU), so a checkpoint taken after step s
also holds the batch already collected for step s + 1. Resuming trains on that very batch, with the
same optimizer moments and RNG streams, so the next loss is the one the uninterrupted run
would have computed.

Layout of `DIR/step-000007/`: `model.safetensors`, `optimizer.safetensors` (tensors) +
`optimizer.json` (the rest), `rng.safetensors` + `state.json` (counters, RNG, metrics
so far), `batch.jsonl` (the next batch's trees). A checkpoint is written to a temporary
folder and renamed, so a crash never leaves half of one.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, load_model, save_file, save_model

from ..records import Tree, read_jsonl, write_jsonl


def _flatten_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    state = optimizer.state_dict()
    tensors, rest = {}, {"param_groups": state["param_groups"], "state": {}}
    for index, slots in state["state"].items():
        rest["state"][str(index)] = {}
        for name, value in slots.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{name}"] = value.contiguous()
            else:
                rest["state"][str(index)][name] = value
    return tensors, rest


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], rest: dict) -> dict:
    state: dict[int, dict[str, Any]] = {int(i): dict(s) for i, s in rest["state"].items()}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    return {"state": state, "param_groups": rest["param_groups"]}


def save_checkpoint(
    root: Path,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    batch: list[Tree],
) -> Path:
    """Write `root/step-{step}` whole, point `root/latest` at it, and return its path."""
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".ckpt-", dir=root))
    try:
        save_model(model, str(tmp / "model.safetensors"))
        tensors, rest = _flatten_optimizer(optimizer)
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        (tmp / "optimizer.json").write_text(json.dumps(rest))
        save_file({"torch": torch.get_rng_state()}, str(tmp / "rng.safetensors"))
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        rng = {"python": random.getstate(), "numpy": [kind, keys.tolist(), pos, has_gauss, gauss]}
        (tmp / "state.json").write_text(json.dumps({**state, "step": step, "rng": rng}))
        write_jsonl(tmp / "batch.jsonl", batch, append=False)
        final = root / f"step-{step:06d}"
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    (root / "latest").write_text(final.name)
    return final


def latest_checkpoint(root: Path) -> Path | None:
    marker = root / "latest"
    return root / marker.read_text().strip() if marker.exists() else None


def load_checkpoint(
    path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> tuple[dict[str, Any], list[Tree]]:
    """Restore weights, optimizer and RNGs in place; return the saved state and next batch."""
    load_model(model, str(path / "model.safetensors"))
    optimizer.load_state_dict(_unflatten_optimizer(
        load_file(str(path / "optimizer.safetensors")),
        json.loads((path / "optimizer.json").read_text()),
    ))
    torch.set_rng_state(load_file(str(path / "rng.safetensors"))["torch"])
    state = json.loads((path / "state.json").read_text())
    python_state = state["rng"]["python"]
    random.setstate((python_state[0], tuple(python_state[1]), python_state[2]))
    kind, keys, pos, has_gauss, gauss = state["rng"]["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, gauss))
    return state, list(read_jsonl(path / "batch.jsonl", Tree))
