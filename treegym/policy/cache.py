"""Where treegym keeps the models it builds offline (`tiny`, `smollm2`), built once.

Several processes may want a model first at the same moment: Ray workers starting on one
machine, or parallel test runs. A lock file next to the model makes the later ones wait
for the first build rather than each replacing the directory while another loads it.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def default_cache_dir() -> Path:
    return Path(os.environ.get("TREEGYM_CACHE", Path.home() / ".cache" / "treegym"))


def cached(name: str, build: Callable[[Path], Path]) -> Path:
    """The model directory `name` in the cache, made by `build(path)` if it is not there."""
    path = default_cache_dir() / name
    done = path / "model.safetensors"
    if done.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():  # another process may have built it while this one waited
            build(path)
    return path


def save_pretrained(path: str | os.PathLike[str], *parts: Any) -> Path:
    """`save_pretrained` each of `parts` (model, tokenizer) into `path`, which ends up
    written whole or not at all: a killed build leaves no directory that looks done."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        for part in parts:
            part.save_pretrained(tmp)
        if path.exists():
            shutil.rmtree(path)
        tmp.rename(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path
