"""Backpropagate a packed tree one trie segment at a time, so its peak is one path's.

Why. Packing computes a shared prefix once, but a dense forward over a whole trie keeps
the activations of all its tokens for backward: on the paper's shape a task's trie is 2.7x
its longest row, so packing saved time and cost memory. Yet the loss is a sum of
per-token terms of each token's own log-prob (loss.py), and a token depends on other
segments only through its ancestors' keys and values. So the trie is walked depth first:

- a segment's forward runs with its ancestors' KV as the cache (`past_key_values`, its
  positions continuing at its depth), which HF masks causally: exactly the tree mask's
  rows for those queries, so each token sees what it saw in its own trajectory;
- its own KV goes to its children as fresh leaf tensors, and its loss is formed at once;
- when the children are done, their gradient w.r.t. that KV has accumulated in the leaves,
  and one backward over the segment's loss and its KV (weighted by those gradients)
  finishes it and frees its graph.

Every token is computed once, as in the dense pass. What is alive at any moment is a
root-to-node path of segments plus the chunk being scored: consecutive sibling subtrees
scored in one pass under their own tree mask, as many as keep the tokens alive within a
budget (`ALIVE` longest paths). Chunks exist for speed: a CPU matmul over a few dozen
rows runs well below its rate over a few hundred, so one segment at a time reached only
0.57 of the ideal speedup where the dense pass reaches about 1 (docs/results.md).

Segments are maximal runs of tokens that share `tout`: a branch-free chain of trie nodes,
so a trie branches only at a segment's last token, and a child's context is its
ancestors' segments whole.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch

from ..policy import gqa_attention
from . import tree_attention
from .forward import linear, logp_entropy, plain_head
from .packing import PackedSequence

# index of the targets a segment predicts, their log-probs and entropies -> their loss
LossOf = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
# Tokens alive at once, in longest paths of the tree: a speed-for-memory dial. On
# SmolLM2's paper shape (docs/results.md) 1.0 keeps a row's activations and reaches 0.57
# of the ideal speedup; 1.5 reaches 0.76-0.96 (median 0.81) with a resident peak 8-10%
# under the rows' (11% over them when glibc returns freed memory at once); 2.0 reaches
# 0.89-0.91, 5-7% over the rows; the one dense pass (Learner(cascade=False)) reaches
# 1.04-1.08 at 1.4x the memory.
ALIVE = 1.5
KV = list[tuple[torch.Tensor, torch.Tensor]]  # per decoder layer: keys, values [B, H, T, D]


@dataclass
class _Segment:
    start: int
    end: int
    children: list[_Segment] = field(default_factory=list)


def applies(model: torch.nn.Module, seq: PackedSequence) -> bool:
    """Whether the learner walks `seq` by segments: a tree in training below the
    memory-linear path's length. A model that checkpoints its own layers drops caches
    in training, so it keeps the one-pass path."""
    return (not seq.is_row and not linear(seq) and model.training and torch.is_grad_enabled()
            and not getattr(model, "is_gradient_checkpointing", False))


def segments(seq: PackedSequence) -> _Segment:
    """The trie of `seq`'s segments, rooted at the one holding the prompt."""
    tout = seq.tout.tolist()
    starts = [t for t in range(len(tout)) if t == 0 or tout[t] != tout[t - 1]]
    root = _Segment(0, len(tout))
    open_: list[_Segment] = []  # the ancestors of the next segment, innermost last
    for start, end in zip(starts, [*starts[1:], len(tout)], strict=True):
        segment = _Segment(start, end)
        while open_ and tout[open_[-1].start] <= start:
            open_.pop()
        if open_:
            open_[-1].children.append(segment)
        else:
            root = segment
        open_.append(segment)
    return root


def runs(seq: PackedSequence, children: list[_Segment],
         budget: int) -> Iterator[tuple[int, int] | _Segment]:
    """`children` (consecutive siblings) as chunks to score in one pass, (start, end) ranges
    of whole subtrees that keep at most `budget` tokens alive with their ancestors, and the
    children too large for that, to walk into."""
    run: tuple[int, int] | None = None
    for child in children:
        end = int(seq.tout[child.start])
        alive = int(seq.position_ids[child.start])  # the ancestors' tokens
        if run and alive + end - run[0] <= budget:
            run = (run[0], end)
            continue
        if run:
            yield run
        run = (child.start, end) if alive + end - child.start <= budget else None
        if run is None:
            yield child
    if run:
        yield run


def backward(model: torch.nn.Module, seq: PackedSequence, loss_of: LossOf,
             alive: float = ALIVE) -> None:
    """Accumulate the gradient of `seq`'s loss into `.grad`, keeping at most `alive`
    longest paths' worth of tokens' activations alive at once."""
    from transformers import DynamicCache

    plain_head(model)
    budget = int(alive * (int(seq.position_ids.max()) + 1))
    device = next(model.parameters()).device
    decoder, head = model.get_decoder(), model.get_output_embeddings()
    dtype = next(model.parameters()).dtype
    positions = seq.position_ids.to(device)
    # The input embeddings are a leaf as well: one embedding backward at the end, not a
    # [vocabulary, hidden] gradient per segment.
    embeds = model.get_input_embeddings()(seq.input_ids.to(device)[None])
    tokens = embeds.detach().requires_grad_(embeds.requires_grad)
    pred, targets = seq.pred_index.to(device), seq.targets.to(device)

    def run(start: int, end: int, ancestors: list[KV], chain: bool) -> tuple[torch.Tensor, KV]:
        """The loss of the targets [start, end) predicts, and its own KV; a chain attends
        causally, a chunk of subtrees under its tree mask, both to all of `ancestors`."""
        context = [(torch.cat([kv[layer][0] for kv in ancestors], -2),
                    torch.cat([kv[layer][1] for kv in ancestors], -2))
                   for layer in range(len(ancestors[0]))] if ancestors else None
        depth = int(positions[start])
        mask = None
        if not chain:
            seen = tree_attention.block_mask(seq.tout, start, end)[:, start:]
            mask = torch.zeros(end - start, depth + end - start, dtype=dtype, device=device)
            mask[:, depth:].masked_fill_(~seen.to(device), torch.finfo(dtype).min)
            mask = mask[None, None]
        cache = DynamicCache(ddp_cache_data=context)
        hidden = decoder(inputs_embeds=tokens[:, start:end], attention_mask=mask,
                         position_ids=positions[None, start:end], past_key_values=cache,
                         use_cache=True).last_hidden_state[0]
        mine = ((pred >= start) & (pred < end)).nonzero().squeeze(-1)
        loss = loss_of(mine, *logp_entropy(head(hidden[pred[mine] - start]), targets[mine]))
        return loss, [(layer.keys[:, :, depth:], layer.values[:, :, depth:])
                      for layer in cache.layers]

    def visit(segment: _Segment, ancestors: list[KV]) -> None:
        loss, own = run(segment.start, segment.end, ancestors, chain=True)
        # a frozen layer's KV (LoRA elsewhere, a frozen bottom) needs no gradient
        leaves = [(k.detach().requires_grad_(k.requires_grad),
                   v.detach().requires_grad_(v.requires_grad)) for k, v in own]
        for part in runs(seq, segment.children, budget):
            if isinstance(part, _Segment):
                visit(part, [*ancestors, leaves])
            else:
                _backward([(run(*part, [*ancestors, leaves], chain=False)[0], None)])
        _backward([(loss, None)] + [
            (out, leaf.grad) for pair, leaf_pair in zip(own, leaves, strict=True)
            for out, leaf in zip(pair, leaf_pair, strict=True) if leaf.grad is not None])

    # A segment's queries see a longer cache, so HF passes a mask, and its `sdpa` then
    # copies grouped KV heads out to every query head, copies backward keeps; the same
    # kernel with the heads broadcast has none.
    grouped = model.config._attn_implementation == "sdpa"
    with gqa_attention.attention(model, gqa_attention.register()) if grouped else nullcontext():
        if len(seq) <= budget:
            _backward([(run(0, len(seq), [], chain=False)[0], None)])
        else:
            visit(segments(seq), [])
    if tokens.grad is not None:
        embeds.backward(tokens.grad)


def _backward(pairs: list[tuple[torch.Tensor, torch.Tensor | None]]) -> None:
    """Backpropagate each output with its gradient (None: a loss, 1), skipping outputs that
    depend on no trained parameter (a loss through frozen layers only)."""
    pairs = [(out, grad) for out, grad in pairs if out.requires_grad]
    if pairs:
        torch.autograd.backward([out for out, _ in pairs],
                                [torch.ones_like(out) if grad is None else grad
                                 for out, grad in pairs])
