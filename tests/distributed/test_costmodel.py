"""The cost model: linear while workers bind, flat once the driver or servers bind, and
a step's tail shows once workers outnumber its chunks."""

from __future__ import annotations

import json

import pytest

from treegym.distributed.costmodel import CostInputs, main, predict


def test_throughput_grows_then_the_bottleneck_moves() -> None:
    inputs = CostInputs(gen_seconds_per_leaf=0.05, servers=4, server_leaves_per_s=100.0)
    one, two, many = (predict(inputs, n) for n in (1, 2, 64))
    assert one.bottleneck == two.bottleneck == "workers"
    assert two.leaves_per_s == pytest.approx(2 * one.leaves_per_s, rel=0.02)
    assert many.bottleneck == "servers" and many.leaves_per_s == 400.0
    fast = CostInputs(gen_seconds_per_leaf=0.05)
    assert predict(fast.model_copy(update={"learner_leaves_per_s": 300.0}), 64).bottleneck == (
        "learner")
    assert predict(fast, 64).bottleneck == "driver"


def test_small_steps_leave_workers_idle() -> None:
    shape = predict(CostInputs(tasks_per_step=96), 64)  # 96 chunks on 128 workers
    assert shape.tail_efficiency == 0.75


def test_the_table_prints_as_json(capsys: object) -> None:
    main(["--json", "--set", "workers_per_node=8"])
    report = json.loads(capsys.readouterr().out)  # type: ignore[attr-defined]
    assert [row["nodes"] for row in report["rows"]] == [1, 2, 4, 8, 16, 32, 64]
    assert report["inputs"]["workers_per_node"] == 8
