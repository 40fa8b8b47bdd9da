"""The model cache: concurrent first uses build once and never see a half-built model."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pytest

from treegym.policy.cache import cached


def _slow_build(path: Path) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    tmp.mkdir()
    time.sleep(0.5)
    (tmp / "model.safetensors").write_text("weights")
    with open(path.parent / "builds.log", "a") as log:
        log.write("built\n")
    tmp.rename(path)
    return path


def _first_use(cache: str, results: multiprocessing.Queue) -> None:
    import os

    os.environ["TREEGYM_CACHE"] = cache
    path = cached("model-x", _slow_build)
    results.put((path / "model.safetensors").read_text())


def test_concurrent_first_uses_build_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    results: multiprocessing.Queue = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=_first_use, args=(str(tmp_path), results))
             for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert sorted(results.get(timeout=5) for _ in procs) == ["weights"] * 4
    assert (tmp_path / "builds.log").read_text() == "built\n"
    monkeypatch.setenv("TREEGYM_CACHE", str(tmp_path))
    assert cached("model-x", _slow_build) == tmp_path / "model-x"  # no rebuild
    assert (tmp_path / "builds.log").read_text() == "built\n"
