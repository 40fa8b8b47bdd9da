"""The memory-linear tree attention is the dense tree mask, computed another way."""

from __future__ import annotations

from unittest import mock

import pytest
import torch
import torch.nn.functional as F
from conftest import make_tree
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from treegym.learn import forward, tree_attention
from treegym.learn.packing import PackedSequence, pack
from treegym.records import Node, Task, Tree

SETTINGS = settings(max_examples=25, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])


@st.composite
def random_trees(draw: st.DrawFn) -> list[Tree]:
    """One to three trees over one prompt: random shapes, lengths, kept nodes, unsampled turns."""
    prompt = draw(st.lists(st.integers(1, 511), min_size=1, max_size=4))
    trees = []
    for index in range(draw(st.integers(1, 3))):
        nodes: list[Node] = []
        for node_id in range(draw(st.integers(1, 7))):
            parent = draw(st.sampled_from([None, *range(node_id)]))
            actions = draw(st.lists(st.integers(1, 511), min_size=1, max_size=4))
            nodes.append(Node(
                id=node_id, parent=parent,
                depth=1 if parent is None else nodes[parent].depth + 1,
                made_by=draw(st.sampled_from(["policy", "human"])) if node_id else "policy",
                action_ids=actions, action_logprobs=[-1.0] * len(actions),
                obs_ids=draw(st.lists(st.integers(1, 511), max_size=3))))
        kept = draw(st.lists(st.sampled_from(range(len(nodes))), min_size=1, unique=True))
        trees.append(Tree(env_id="test", task=Task(id="t", prompt="p"), task_index=0,
                          tree_index=index, seed=0, mode="tree", policy="test",
                          prompt_ids=prompt, nodes=nodes, kept=kept))
    return trees


def tree_seqs(trees: list[Tree]) -> list[PackedSequence]:
    return [s for s in pack(trees) if not s.is_row]


@SETTINGS
@given(trees=random_trees(), data=st.data())
def test_end_vector_is_the_dense_mask(trees, data):
    for seq in pack(trees):
        dense = seq.attention_mask()[0, 0] == 0
        stop = data.draw(st.integers(1, len(seq)))
        start = data.draw(st.integers(0, stop - 1))
        assert torch.equal(tree_attention.block_mask(seq.tout, 0, len(seq)), dense)
        assert torch.equal(tree_attention.block_mask(seq.tout, start, stop),
                           dense[start:stop, :stop])
        assert not dense[start:stop, stop:].any()  # a block never sees keys past its end
        keys = tree_attention.block_keys(seq.tout, start, stop)
        hidden = torch.ones(stop, dtype=torch.bool)
        hidden[keys] = False
        assert not dense[start:stop, :stop][:, hidden].any()  # no visible key is left out
        assert torch.equal(tree_attention.block_mask(seq.tout, start, stop, keys),
                           dense[start:stop, keys])


@SETTINGS
@given(trees=random_trees(), block=st.integers(1, 9), heads=st.sampled_from([(9, 3), (4, 4)]))
def test_blocks_equal_dense_sdpa_with_grouped_heads(trees, block, heads):
    """SmolLM2's 9 query heads over 3 KV heads, and plain multi-head, any block size."""
    for seq in pack(trees):
        torch.manual_seed(len(seq))
        q = torch.randn(1, heads[0], len(seq), 8, dtype=torch.float64, requires_grad=True)
        kv = [torch.randn(1, heads[1], len(seq), 8, dtype=torch.float64, requires_grad=True)
              for _ in range(2)]
        out = tree_attention.tree_attention(q, *kv, seq.tout, block=block)
        grads = torch.autograd.grad(out.square().sum(), [q, *kv])
        ref = F.scaled_dot_product_attention(q, *kv, attn_mask=seq.attention_mask(q.dtype),
                                             enable_gqa=heads[0] != heads[1])
        ref_grads = torch.autograd.grad(ref.square().sum(), [q, *kv])
        torch.testing.assert_close(out, ref)
        for g, r in zip(grads, ref_grads, strict=True):
            torch.testing.assert_close(g, r)


def scored(model, seq: PackedSequence, linear_from: int | None):
    """Log-probs, entropies and parameter grads of sum(log-probs) on one path, in training
    mode, where the memory-linear path also checkpoints layers and chunks the LM head."""
    model.train()
    model.zero_grad(set_to_none=True)
    with mock.patch.object(forward, "LINEAR_FROM", linear_from):
        assert forward.linear(seq) == (linear_from is not None)
        logp, entropy = forward.score(model, seq)
    logp.sum().backward()
    return logp.detach(), entropy, {n: p.grad.clone() for n, p in model.named_parameters()}


def assert_grads_close(found: dict[str, torch.Tensor], dense: dict[str, torch.Tensor]) -> None:
    """Relative to each tensor's largest element, floored at 1e-3 of the model's: where a
    gradient is exactly zero in exact arithmetic (a query with one visible key moves no
    q_proj weight), the dense path's rounding noise is not a scale."""
    floor = 1e-3 * max(float(g.abs().max()) for g in dense.values())
    for name, grad in dense.items():
        scale = max(float(grad.abs().max()), floor, 1e-12)
        assert float((found[name] - grad).abs().max()) / scale <= 1e-4, name


@settings(SETTINGS, max_examples=10)
@given(trees=random_trees(), block=st.integers(2, 16))
def test_model_logprobs_and_grads_equal_dense(model, trees, block):
    """On the tiny model (8 query heads over 2 KV heads), in fp32."""
    for seq in tree_seqs(trees):
        if not len(seq.targets):
            continue
        dense = scored(model, seq, None)
        with (mock.patch.object(tree_attention, "BLOCK", block),
              mock.patch.object(forward, "HEAD_CHUNK", block)):
            linear = scored(model, seq, 0)
        torch.testing.assert_close(linear[0], dense[0], rtol=0, atol=1e-5)
        torch.testing.assert_close(linear[1], dense[1], rtol=0, atol=1e-5)
        assert_grads_close(linear[2], dense[2])
    assert model.config._attn_implementation == "sdpa"  # restored after each call
    assert not model.is_gradient_checkpointing


def test_threshold_picks_the_path():
    (seq,) = pack([make_tree([1, 0])])
    with mock.patch.object(forward, "LINEAR_FROM", len(seq)):
        assert forward.linear(seq)
    with mock.patch.object(forward, "LINEAR_FROM", len(seq) + 1):
        assert not forward.linear(seq)
    with mock.patch.object(forward, "LINEAR_FROM", None):
        assert not forward.linear(seq)


def test_tree_attention_needs_the_end_vector(model):
    with tree_attention.attending(model), pytest.raises(ValueError, match="tree_end"):
        model(input_ids=torch.tensor([[1, 2, 3]]))
    assert model.config._attn_implementation == "sdpa"
