import math

import pytest
from conftest import make_tree

from treegym.learn.advantages import EPS, grpo, normalise, tree_grpo, tree_grpo_intra

INTER = 0.5 / math.sqrt(0.3)  # rewards {1,0,1,0,0,1}: mean 0.5, unbiased std sqrt(0.3)
INTRA = 1 / math.sqrt(3)  # std of {1,0,1} and {0,0,1}


def task():
    return [make_tree([1, 0, 1], tree_index=0), make_tree([0, 0, 1], tree_index=1)]


def test_grpo_groups_all_leaves_of_a_task():
    a = grpo(task())
    assert a[0] == pytest.approx({1: INTER, 2: -INTER, 3: INTER}, abs=1e-5)
    assert a[1] == pytest.approx({1: -INTER, 2: -INTER, 3: INTER}, abs=1e-5)


def test_intra_groups_by_tree():
    a = tree_grpo_intra(task())
    assert a[0] == pytest.approx({1: INTRA, 2: -2 * INTRA, 3: INTRA}, abs=1e-5)
    assert a[1] == pytest.approx({1: -INTRA, 2: -INTRA, 3: 2 * INTRA}, abs=1e-5)


def test_tree_grpo_is_the_sum_of_inter_and_intra():
    a = tree_grpo(task())
    assert a[0][2] == pytest.approx(-INTER - 2 * INTRA, abs=1e-5)
    assert a[1][3] == pytest.approx(INTER + 2 * INTRA, abs=1e-5)


def test_tasks_are_separate_groups():
    a = grpo([make_tree([1, 0], task_index=0), make_tree([5, 5], task_index=1)])
    assert a[0][1] == pytest.approx(0.5 / math.sqrt(0.5), abs=1e-5)
    assert a[1] == {1: 0.0, 2: 0.0}


def test_one_leaf_gets_mean_zero_std_one():
    assert grpo([make_tree([0.7])])[0] == {1: 0.7 / (1 + EPS)}
    assert tree_grpo([make_tree([0.7])])[0][1] == pytest.approx(1.4, abs=1e-5)


def test_equal_rewards_give_zero_not_nan():
    for fn in (grpo, tree_grpo, tree_grpo_intra):
        for a in fn([make_tree([1, 1, 1]), make_tree([1, 1, 1], tree_index=1)]):
            assert all(v == 0.0 and not math.isnan(v) for v in a.values())


def test_normalise_edge_cases():
    assert normalise([]) == []
    assert all(math.isfinite(v) for v in normalise([1e-30, 0.0, 1e30]))


def test_only_kept_leaves_count():
    tree = make_tree([1, 0, 0])
    tree.kept = [1, 2]
    assert set(grpo([tree])[0]) == {1, 2}
    assert grpo([tree])[0][1] == pytest.approx(0.5 / math.sqrt(0.5), abs=1e-5)
