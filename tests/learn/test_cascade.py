"""Backpropagating a tree segment by segment gives the one-pass dense gradient."""

from __future__ import annotations

import pytest
import torch
from conftest import make_tree
from hypothesis import given, settings
from hypothesis import strategies as st
from test_tree_attention import SETTINGS, assert_grads_close, random_trees, tree_seqs

from treegym.learn import cascade, forward
from treegym.learn.learner import Learner
from treegym.learn.packing import PackedSequence, pack


def spans(segment: cascade._Segment) -> list:
    return [(segment.start, segment.end), [spans(c) for c in segment.children]]


def test_segments_are_the_branch_free_chains_of_the_trie():
    (seq,) = pack([make_tree([1, 0])])  # prompt 1 2 3, trunk 10 11 12, leaves 20 30 | 21 31
    assert spans(cascade.segments(seq)) == [(0, 6), [[(6, 8), []], [(8, 10), []]]]
    trees = [make_tree([1, 0]), make_tree([1], tree_index=1)]
    (seq,) = pack(trees)  # two trunks under one prompt: the prompt is a segment alone
    assert spans(cascade.segments(seq)) == [
        (0, 3), [[(3, 6), [[(6, 8), []], [(8, 10), []]]], [(10, 15), []]]]


def per_token_loss(seq: PackedSequence, seed: int):
    """A loss that is a sum of non-linear per-token terms, as loss.py's are."""
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(len(seq.targets), generator=generator)
    bend = torch.rand(len(seq.targets), generator=generator)

    def loss_of(index: torch.Tensor, logp: torch.Tensor, _: torch.Tensor) -> torch.Tensor:
        return (weight[index] * logp + bend[index] * logp.exp()).sum()
    return loss_of


def gradients(model, backward) -> dict[str, torch.Tensor]:
    model.train()
    model.zero_grad(set_to_none=True)
    backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def assert_cascade_is_dense(model, seq: PackedSequence, seed: int, alive: float) -> None:
    loss_of = per_token_loss(seq, seed)
    index = torch.arange(len(seq.targets))
    dense = gradients(model, lambda: loss_of(index, *forward.score(model, seq)).backward())
    seen: list[torch.Tensor] = []

    def recording(index: torch.Tensor, logp: torch.Tensor, entropy: torch.Tensor) -> torch.Tensor:
        seen.append(index)
        return loss_of(index, logp, entropy)
    found = gradients(model, lambda: cascade.backward(model, seq, recording, alive))
    assert sorted(torch.cat(seen).tolist()) == index.tolist()  # each target once
    assert found.keys() == dense.keys()
    assert_grads_close(found, dense)


@settings(SETTINGS, max_examples=15)
@given(trees=random_trees(), seed=st.integers(0, 2**16), alive=st.sampled_from([1.0, 1.6, 3.0]))
def test_cascade_gradients_equal_the_dense_pass(model, trees, seed, alive):
    """On random tries (unsampled turns, kept inner nodes, deep chains), fp32 tiny model,
    walked one segment at a time (1.0) or in chunks of subtrees (larger budgets)."""
    for seq in tree_seqs(trees):
        if len(seq.targets):
            assert_cascade_is_dense(model, seq, seed, alive)


@pytest.mark.parametrize("alive", [1.0, 2.0])
def test_frozen_layers_are_skipped_not_refused(model, alive):
    """Only the top layer trains (as `bench signal` and LoRA do): its gradient matches,
    and the walk does not ask the frozen ones for a gradient."""
    (seq,) = pack([make_tree([1, 0, 1]), make_tree([0, 1], tree_index=1)])
    top = model.model.layers[-1]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p in model.parameters():
            p.requires_grad_(False)
        for p in top.mlp.parameters():
            p.requires_grad_(True)
        assert_cascade_is_dense(model, seq, 0, alive)
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def test_chunks_keep_the_alive_tokens_within_the_budget():
    trees = [make_tree([1, 0, 1]), make_tree([0, 1], tree_index=1)]
    (seq,) = pack(trees)  # prompt 3 | trunk 3 + leaves 2, 2, 2 | trunk 3 + leaves 2, 2
    root = cascade.segments(seq)
    assert list(cascade.runs(seq, root.children, budget=3 + 3 + 6)) == [(3, 12), (12, 19)]
    assert list(cascade.runs(seq, root.children, budget=3 + 3 + 4)) == [
        root.children[0], (12, 19)]
    trunk = root.children[0]
    assert list(cascade.runs(seq, trunk.children, budget=3 + 3 + 4)) == [(6, 10), (10, 12)]
    assert list(cascade.runs(seq, trunk.children, budget=6)) == trunk.children  # walk all
    assert list(cascade.runs(seq, root.children, budget=len(seq))) == [(3, len(seq))]


def test_the_cascade_is_for_training_trees_only(model):
    (tree,) = pack([make_tree([1, 0])])
    (row,) = pack([make_tree([1])])
    model.train()
    assert cascade.applies(model, tree) and not cascade.applies(model, row)
    with torch.no_grad():
        assert not cascade.applies(model, tree)
    model.eval()
    assert not cascade.applies(model, tree)
    model.train()


def test_a_soft_capped_head_is_refused(model, monkeypatch):
    (seq,) = pack([make_tree([1, 0])])
    monkeypatch.setattr(model.config, "final_logit_softcapping", 30.0, raising=False)
    with pytest.raises(ValueError, match="post-processes its logits"):
        cascade.backward(model, seq, per_token_loss(seq, 0))


@pytest.mark.parametrize("bad", [0.5, 0.0, float("nan")])
def test_a_budget_under_one_path_is_refused(model, bad):
    with pytest.raises(ValueError, match="alive_paths must be >= 1.0"):
        Learner(model, alive_paths=bad)
