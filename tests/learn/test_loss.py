import pytest
import torch
from conftest import make_tree

from treegym.learn.loss import LossConfig, leaf_scales, sequence_loss
from treegym.learn.packing import pack, rows


def naive_ppo(logp, old, adv, low, high):
    ratio = torch.exp(logp - old)
    return -torch.minimum(ratio * adv, ratio.clamp(1 - low, 1 + high) * adv)


def test_packed_loss_is_the_sum_of_per_leaf_ppo_terms():
    trees = [make_tree([1, 0, 1])]
    advantages = [{1: 0.8, 2: -1.3, 3: 0.4}]
    config = LossConfig(clip_low=0.1, clip_high=0.3)
    scales = leaf_scales(trees, config.aggregation)
    (seq,) = pack(trees)
    torch.manual_seed(0)
    logp = seq.old_logprobs + torch.randn(len(seq.targets)) * 0.5  # ratios inside and outside
    loss, metrics = sequence_loss(seq, logp, torch.zeros_like(logp), advantages, scales, config)
    expected = 0.0
    for j, (_, leaf) in enumerate(seq.leaves):
        on = seq.below[:, j]
        expected += scales[(0, leaf)] * naive_ppo(
            logp[on], seq.old_logprobs[on], advantages[0][leaf], 0.1, 0.3).sum()
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)
    assert 0 < metrics["clip_frac"] < 1


def test_scales():
    trees = [make_tree([1, 0])]  # each leaf row has 4 action tokens
    assert leaf_scales(trees, "token-mean") == {(0, 1): 1 / 8, (0, 2): 1 / 8}
    assert leaf_scales(trees, "seq-mean") == {(0, 1): 1 / 8, (0, 2): 1 / 8}
    trees[0].nodes[2].action_ids = trees[0].nodes[2].action_ids * 2
    trees[0].nodes[2].action_logprobs = trees[0].nodes[2].action_logprobs * 2
    assert leaf_scales(trees, "token-mean") == {(0, 1): 1 / 10, (0, 2): 1 / 10}
    assert leaf_scales(trees, "seq-mean") == {(0, 1): 1 / 8, (0, 2): 1 / 12}


def test_k3_kl_is_zero_against_itself_and_positive_otherwise():
    trees = [make_tree([1, 0])]
    (seq,) = rows(trees)[:1]
    logp = seq.old_logprobs.clone()
    scales = leaf_scales(trees, "token-mean")
    adv = [{1: 1.0, 2: -1.0}]
    config = LossConfig(kl_coef=1.0)
    _, same = sequence_loss(seq, logp, torch.zeros_like(logp), adv, scales, config, logp)
    _, other = sequence_loss(seq, logp, torch.zeros_like(logp), adv, scales, config, logp - 0.3)
    assert same["kl"] == 0.0 and other["kl"] > 0


def test_config_validates():
    with pytest.raises(ValueError):
        LossConfig(clip_low=1.5)
    with pytest.raises(ValueError):
        LossConfig(aggregation="sum")
