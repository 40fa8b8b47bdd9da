"""`bench_signal`: how much policy-gradient signal chain and tree batches carry per token.

Tree-GRPO's case is that shared prefixes buy more leaves, and sibling contrasts more
non-flat groups, for the same generated tokens. Whether that turns into a better
gradient is measured here with the policy held fixed, so no training noise enters:

1. Roll out R chain batches (n chains per task, `grpo` advantages) and R tree batches
   (m trees of 1 + n·l leaves, all kept, `tree_grpo` advantages) on the same tasks,
   batch r sampling with seed `seed + r`. The tasks are fixed by `seed` (collect's reset
   seeds), and so is the stream a tree draws its expansion points from: only the sampled
   tokens differ between batches, so with few turns the trees' shapes may repeat and the
   tree figures leave out that part of the across-seed spread.
2. One reference batch: chains, `reference_factor` times as many per task, seed
   `seed + R`, on the same tasks: the best available estimate of the true gradient.
3. For every batch, g = the gradient of the batch loss that `Learner.backward` applies in
   training (packed, token-mean, clipped ratio ≈ 1 at a fixed policy), restricted to
   the last decoder layer's MLP weights so that a backward pass stays cheap.

Per mode it reports the cosine of each g_r to the reference (mean and across-seed std)
and the trace-normalised across-seed variance

    rel_var = (1/R) · sum_r ||g_r - ḡ||² / ||ḡ||²,   ḡ = (1/R) · sum_r g_r,

which is scale-free, so tree_grpo's larger advantages (a sum of two normalised terms)
don't count as noise. A batch whose every group is flat has rewards without spread: its
advantages are rounding residue (~1e-11), training learns nothing from it, so its g is 0
(cosine 0) and it is counted in `zero_signal_batches` rather than turned into noise.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from pydantic import BaseModel, Field

from ..policy import SamplingParams, make_policy
from ..progress import Progress, counter, silent
from ..records import Tree
from ..rollout.collect import collect
from ..rollout.samplers import ChainSampler, Sampler, TreeSampler
from .advantages import ESTIMATORS, flat_groups
from .learner import Learner

SUBSET = "last decoder layer's MLP weights (gate_proj, up_proj, down_proj)"


class ModeSignal(BaseModel):
    """One mode's figures over its R batches."""

    estimator: str = Field(description="Advantage estimator the learner applies.")
    leaves: float = Field(description="Kept leaves per batch (mean over R).")
    generated_tokens: float = Field(description="Tokens the policy generated per batch "
                                    "(mean over R), regenerated tree prefixes included.")
    leaves_per_1k_tokens: float = Field(description="leaves / generated_tokens · 1000.")
    nonzero_group_fraction: float = Field(description="Groups (tasks) with a non-zero "
                                          "advantage, over all groups of all R batches.")
    zero_signal_batches: int = Field(description="Batches whose every group was flat: g = 0.")
    cosine_to_reference: float | None = Field(description="Mean over R of cos(g_r, g_ref); "
                                              "null when the reference gradient is 0.")
    cosine_std: float | None = Field(description="Across-seed std (ddof 1) of those cosines.")
    relative_variance: float | None = Field(
        description="(1/R) sum_r ||g_r - ḡ||² / ||ḡ||²; null when ḡ = 0.")


class SignalReport(BaseModel):
    """`treegym bench signal`'s figures; `figures()` flattens them for print_report."""

    env_id: str
    policy: str
    tasks: int
    repeats: int = Field(description="R: batches per mode, one sampling seed each.")
    shape: str = Field(description="Chain and tree batch shapes per task.")
    max_tokens: int = Field(description="Tokens per turn.")
    max_turns: int
    temperature: float
    seed: int
    parameters: str = Field(description="The parameter subset gradients are taken over.")
    parameter_count: int = Field(description="Scalars in that subset.")
    reference_leaves: int = Field(description="Leaves of the reference chain batch.")
    reference_generated_tokens: int
    reference_nonzero_group_fraction: float
    reference_grad_norm: float = Field(description="||g_ref||; 0 means no signal at all.")
    chain: ModeSignal
    tree: ModeSignal
    tokens_ratio: float | None = Field(description="tree / chain generated tokens per batch.")
    leaves_per_1k_tokens_ratio: float | None = Field(description="tree / chain.")
    nonzero_group_fraction_ratio: float | None = Field(description="tree / chain.")
    cosine_ratio: float | None = Field(description="tree / chain mean cosine to reference.")
    relative_variance_ratio: float | None = Field(description="tree / chain; < 1: tree "
                                                  "gradients vary less across seeds.")

    def figures(self) -> dict[str, Any]:
        """Flat `{figure}_{mode}` keys, as `bench rollout` prints them."""
        out = self.model_dump(exclude={"chain", "tree"})
        for mode in ("chain", "tree"):
            for key, value in getattr(self, mode).model_dump().items():
                out[f"{key}_{mode}"] = value
        return out


def _ratio(tree: float | None, chain: float | None) -> float | None:
    return None if tree is None or not chain else round(tree / chain, 3)


def signal_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The last decoder layer's MLP weights: late enough that every token's loss reaches
    them, small enough that backward stops one layer below the head."""
    return list(model.get_decoder().layers[-1].mlp.parameters())


@contextmanager
def trainable_only(model: torch.nn.Module, params: Sequence[torch.nn.Parameter]) -> Iterator[None]:
    """Only `params` take gradients inside; flags, grads and eval/train mode are restored."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    chosen = {id(p) for p in params}
    was_training = model.training
    for p, _ in flags:
        p.requires_grad_(id(p) in chosen)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
            p.grad = None
        model.train(was_training)


def batch_gradient(learner: Learner, params: Sequence[torch.nn.Parameter],
                   trees: Sequence[Tree], estimator: str) -> tuple[torch.Tensor, int, int]:
    """(g flattened in fp64, non-flat groups, groups): the gradient training would apply."""
    advantages = ESTIMATORS[estimator](trees)
    flat, groups = flat_groups(trees, advantages, estimator)
    if flat == groups:
        return torch.zeros(sum(p.numel() for p in params), dtype=torch.float64), 0, groups
    learner.model.zero_grad(set_to_none=True)
    learner.backward(trees, advantages)
    grad = torch.cat([p.grad.detach().double().flatten().cpu() for p in params])
    return grad, groups - flat, groups


def mode_signal(estimator: str, grads: Sequence[torch.Tensor], reference: torch.Tensor,
                leaves: Sequence[int], tokens: Sequence[int], nonzero: int,
                groups: int) -> ModeSignal:
    """Fold one mode's R gradients and rollout counts into its figures."""
    norms = [float(g.norm()) for g in grads]
    ref_norm = float(reference.norm())
    cosines = None
    if ref_norm > 0:
        cosines = [float(g @ reference) / (n * ref_norm) if n > 0 else 0.0
                   for g, n in zip(grads, norms, strict=True)]
    mean = torch.stack(list(grads)).mean(0)
    mean_sq = float(mean @ mean)
    rel_var = (sum(float((g - mean) @ (g - mean)) for g in grads) / len(grads) / mean_sq
               if mean_sq > 0 else None)
    leaves_mean, tokens_mean = statistics.fmean(leaves), statistics.fmean(tokens)
    return ModeSignal(
        estimator=estimator, leaves=leaves_mean, generated_tokens=tokens_mean,
        leaves_per_1k_tokens=round(1000 * leaves_mean / tokens_mean, 3) if tokens_mean else 0.0,
        nonzero_group_fraction=round(nonzero / groups, 4),
        zero_signal_batches=sum(n == 0 for n in norms),
        cosine_to_reference=None if cosines is None else round(statistics.fmean(cosines), 4),
        cosine_std=None if cosines is None else round(statistics.stdev(cosines), 4),
        relative_variance=None if rel_var is None else round(rel_var, 4),
    )


def bench_signal(
    env_id: str = "treegym/RG-chain_sum-v0",
    *,
    spec: str = "tiny",
    tasks: int = 4,
    repeats: int = 3,
    chains: int = 4,
    m: int = 2,
    n: int = 2,
    l: int = 1,  # noqa: E741 - the paper's name
    reference_factor: int = 8,
    max_tokens: int = 48,
    max_turns: int = 2,
    temperature: float = 1.0,
    seed: int = 0,
    env_kwargs: dict[str, Any] | None = None,
    progress: Progress = silent,
) -> SignalReport:
    """Collect R chain and R tree batches and a reference, then compare their gradients."""
    if repeats < 2:
        raise ValueError("repeats must be at least 2: the across-seed spread needs two seeds")
    env_kwargs = {"max_turns": max_turns} | dict(env_kwargs or {})
    modes: dict[str, tuple[Sampler, str]] = {
        "chain": (ChainSampler(n=chains), "grpo"),
        "tree": (TreeSampler(m=m, n=n, l=l, k=None), "tree_grpo"),
    }
    policy = make_policy(spec)
    try:
        model = getattr(policy, "model", None)
        if not isinstance(model, torch.nn.Module):
            raise ValueError(f"policy {spec!r} holds no torch model to take gradients of; "
                             "use an hf policy (tiny, smollm2, hf:PATH)")

        def roll(sampler: Sampler, sample_seed: int, what: str) -> tuple[list[Tree], int]:
            params = SamplingParams(max_tokens=max_tokens, temperature=temperature,
                                    seed=sample_seed)
            tick = counter(progress, tasks * sampler.trees_per_task, what)
            result = collect(env_id, policy, sampler, tasks, seed=seed, params=params,
                             env_kwargs=env_kwargs, on_tree=tick)
            return result.trees, result.stats.generated_tokens

        batches = {name: [roll(sampler, seed + r, f"{name} trees, seed {seed + r}")
                          for r in range(repeats)]
                   for name, (sampler, _) in modes.items()}
        ref_trees, ref_tokens = roll(ChainSampler(n=chains * reference_factor),
                                     seed + repeats, "reference trees")
        params = signal_parameters(model)
        step = counter(progress, 2 * repeats + 1, "gradients")
        with trainable_only(model, params):
            learner = Learner(model)
            reference, ref_nonzero, ref_groups = batch_gradient(learner, params, ref_trees,
                                                                "grpo")
            step()
            figures = {}
            for name, (_, estimator) in modes.items():
                grads, nonzero, groups = [], 0, 0
                for trees, _ in batches[name]:
                    grad, moved, count = batch_gradient(learner, params, trees, estimator)
                    grads.append(grad)
                    nonzero, groups = nonzero + moved, groups + count
                    step()
                figures[name] = mode_signal(
                    estimator, grads, reference,
                    [sum(len(t.kept) for t in trees) for trees, _ in batches[name]],
                    [tokens for _, tokens in batches[name]], nonzero, groups)
    finally:
        policy.close()
    chain, tree = figures["chain"], figures["tree"]
    return SignalReport(
        env_id=env_id, policy=spec, tasks=tasks, repeats=repeats,
        shape=f"chain n={chains}; tree m={m} n={n} l={l}, all leaves kept; "
              f"reference chain n={chains * reference_factor}",
        max_tokens=max_tokens, max_turns=env_kwargs["max_turns"], temperature=temperature,
        seed=seed,
        parameters=SUBSET, parameter_count=sum(p.numel() for p in params),
        reference_leaves=sum(len(t.kept) for t in ref_trees),
        reference_generated_tokens=ref_tokens,
        reference_nonzero_group_fraction=round(ref_nonzero / ref_groups, 4),
        reference_grad_norm=float(reference.norm()),
        chain=chain, tree=tree,
        tokens_ratio=_ratio(tree.generated_tokens, chain.generated_tokens),
        leaves_per_1k_tokens_ratio=_ratio(tree.leaves_per_1k_tokens, chain.leaves_per_1k_tokens),
        nonzero_group_fraction_ratio=_ratio(tree.nonzero_group_fraction,
                                            chain.nonzero_group_fraction),
        cosine_ratio=_ratio(tree.cosine_to_reference, chain.cosine_to_reference),
        relative_variance_ratio=_ratio(tree.relative_variance, chain.relative_variance),
    )
