import copy

import pytest
import torch
from conftest import make_tree

from treegym.learn.advantages import tree_grpo
from treegym.learn.bench import max_abs_logprob_diff, max_rel_grad_diff
from treegym.learn.forward import check_attention
from treegym.learn.learner import Learner
from treegym.learn.loss import LossConfig
from treegym.learn.packing import pack, rows
from treegym.learn.synthetic import synthetic_trees


def test_layout_is_dfs_preorder_with_depth_positions():
    (seq,) = pack([make_tree([1, 0])])
    assert seq.input_ids.tolist() == [1, 2, 3, 10, 11, 12, 20, 30, 21, 31]
    assert seq.position_ids.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 6, 7]
    assert seq.targets.tolist() == [10, 11, 20, 30, 21, 31]
    # a node's first token is predicted from its parent's last position (the obs token 12)
    assert seq.pred_index.tolist() == [2, 3, 5, 6, 5, 8]
    assert seq.old_logprobs.tolist() == pytest.approx([-0.5, -0.6, -1.0, -1.5, -1.0, -1.5])
    assert seq.below.int().tolist() == [[1, 1], [1, 1], [1, 0], [1, 0], [0, 1], [0, 1]]
    assert seq.tout.tolist() == [10] * 6 + [8, 8, 10, 10]
    assert seq.path_tokens == 16


def test_mask_allows_ancestors_and_self_only():
    (seq,) = pack([make_tree([1, 0])])
    allowed = (seq.attention_mask()[0, 0] == 0).int()
    assert allowed[8].tolist() == [1, 1, 1, 1, 1, 1, 0, 0, 1, 0]  # 21 skips its sibling 20, 30
    assert allowed[7].tolist() == [1] * 8 + [0, 0]
    assert allowed[3].tolist() == [1] * 4 + [0] * 6
    assert seq.attention_mask().dtype == torch.float32
    assert seq.attention_mask()[0, 0, 3, 4] == torch.finfo(torch.float32).min


def test_nodes_off_kept_paths_are_pruned():
    tree = make_tree([1, 0, 1])
    tree.kept = [1]
    (seq,) = pack([tree])
    assert seq.input_ids.tolist() == [1, 2, 3, 10, 11, 12, 20, 30]
    assert seq.is_row


def test_trees_sharing_a_prompt_share_a_root():
    trees = [make_tree([1, 0]), make_tree([0, 1], tree_index=1),
             make_tree([1], task_index=1, prompt_ids=[7, 8])]
    seqs = pack(trees)
    assert [len(s) for s in seqs] == [3 + 2 * 7, 2 + 5]
    assert seqs[0].leaves == [(0, 1), (0, 2), (1, 1), (1, 2)]


def test_split_over_max_tokens_repeats_ancestors():
    seqs = pack([make_tree([1, 0, 1])], max_tokens=10)
    assert [s.leaves for s in seqs] == [[(0, 1), (0, 2)], [(0, 3)]]
    assert seqs[1].input_ids.tolist() == [1, 2, 3, 10, 11, 12, 22, 32]
    assert len(pack([make_tree([1, 0, 1])], max_tokens=1)) == 3  # a path never splits


def test_flash_attention_is_refused(model):
    other = copy.copy(model)
    other.config = copy.deepcopy(model.config)
    other.config._attn_implementation = "flash_attention_2"
    with pytest.raises(ValueError, match="sdpa"):
        check_attention(other)


def small_batch():
    return synthetic_trees(2, 2, 3, prompt_tokens=24, turns=3, action_tokens=6,
                           obs_tokens=4, seed=1)


def test_packed_logprobs_equal_per_leaf(model):
    trees = small_batch()
    assert max_abs_logprob_diff(model, Learner(model), trees) <= 1e-5


def grads(learner, trees, advantages):
    learner.model.zero_grad(set_to_none=True)
    metrics = learner.backward(trees, advantages)
    return {n: p.grad.clone() for n, p in learner.model.named_parameters()}, metrics


@pytest.mark.parametrize("aggregation", ["token-mean", "seq-mean"])
def test_packed_gradients_equal_per_leaf(model, aggregation):
    trees = small_batch()
    advantages = tree_grpo(trees)
    loss = LossConfig(aggregation=aggregation, kl_coef=0.1)
    reference = copy.deepcopy(model)
    with torch.no_grad():  # a reference that differs, so the KL term has a gradient
        for p in reference.parameters():
            p.add_(torch.randn_like(p) * 1e-3)
    per_leaf, m_rows = grads(Learner(model, loss, reference=reference, packed=False),
                             trees, advantages)
    packed, m_packed = grads(Learner(model, loss, reference=reference), trees, advantages)
    split, _ = grads(Learner(model, loss, reference=reference, max_tokens=60),
                     trees, advantages)
    dense, m_dense = grads(Learner(model, loss, reference=reference, cascade=False),
                           trees, advantages)
    assert max_rel_grad_diff(packed, per_leaf) <= 1e-4
    assert max_rel_grad_diff(split, per_leaf) <= 1e-4
    assert max_rel_grad_diff(dense, per_leaf) <= 1e-4
    assert m_packed["tokens"] < m_rows["tokens"] == m_packed["row_tokens"]
    for key in ("pg_loss", "kl", "entropy", "clip_frac"):
        assert m_packed[key] == pytest.approx(m_rows[key], rel=1e-4, abs=1e-7)
        assert m_dense[key] == pytest.approx(m_rows[key], rel=1e-4, abs=1e-7)
    assert 0 < m_packed["clip_frac"] < 1 and m_packed["kl"] > 0


def test_rows_are_the_trajectories():
    trees = small_batch()
    for seq in rows(trees):
        i, leaf = seq.leaves[0]
        traj = trees[i].trajectory(leaf)
        assert seq.input_ids.tolist() == traj.ids
        trained = [t for t, m in enumerate(traj.action_mask) if m]
        assert seq.targets.tolist() == [traj.ids[t] for t in trained]
        assert seq.pred_index.tolist() == [t - 1 for t in trained]
