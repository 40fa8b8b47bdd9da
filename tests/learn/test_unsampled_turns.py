"""Turns no policy sampled (typed in `play`) are context for the learner, never PPO terms.

Their 0.0 log-probs are placeholders: a ratio against them would push the policy by an
amount that depends on a made-up number. The learner must give exactly the loss and
gradients of the same tree with those turns' ids kept as context and their tokens'
loss masked out.
"""

from __future__ import annotations

import pytest
import torch
from helpers import call

from treegym.learn import Learner
from treegym.learn.bench import max_rel_grad_diff
from treegym.learn.loss import LossConfig
from treegym.learn.packing import pack
from treegym.play import PlaySession
from treegym.policy import SamplingParams, make_policy
from treegym.records import Tree


@pytest.fixture(scope="module")
def played() -> tuple[object, Tree]:
    """A real play tree on Maze with the tiny policy: typed, model and typed turns, and a
    second branch of typed turns only."""
    policy = make_policy("tiny")
    with PlaySession("treegym/Maze-v0", seed=0, policy=policy, env_kwargs={"max_turns": 6},
                     params=SamplingParams(max_tokens=12, seed=0)) as s:
        s.step(call("look"))
        s.propose(1)
        s.take(0)
        s.step("<answer>done</answer>")
        s.back()
        s.back()
        s.fork()
        s.step("<answer>stop</answer>")
        tree = s.to_tree()
    assert {n.made_by for n in tree.nodes} == {"human", "policy"} and len(tree.kept) == 2
    return policy, tree


def _grads(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.grad.detach().clone() for p in model.parameters() if p.grad is not None]


def _learner_loss(model: torch.nn.Module, tree: Tree, adv: list[dict[int, float]]):
    model.zero_grad(set_to_none=True)
    metrics = Learner(model, LossConfig(clip_low=0.1, clip_high=0.2)).backward([tree], adv)
    return metrics["pg_loss"], _grads(model)


def _oracle(model: torch.nn.Module, tree: Tree, adv: list[dict[int, float]]) -> torch.Tensor:
    """One causal row per kept leaf, typed turns' ids in it as context, their tokens
    masked out of the PPO sum: the loss as the issue states it, without packing."""
    trained = sum(sum(t.action_mask) for t in tree.trajectories())
    loss = torch.zeros(())
    for traj in tree.trajectories():
        ids = torch.tensor([traj.ids])
        logits = model(input_ids=ids, use_cache=False).logits[0, :-1].float()
        logp = torch.log_softmax(logits, -1).gather(-1, ids[0, 1:, None]).squeeze(-1)
        on = torch.tensor(traj.action_mask[1:])
        ratio = torch.exp(logp[on] - torch.tensor(traj.logprobs[1:])[on])
        a = adv[0][traj.leaf]
        loss = loss - torch.minimum(ratio * a, ratio.clamp(0.9, 1.2) * a).sum() / trained
    return loss


def test_typed_turns_are_context_with_their_loss_masked(played) -> None:
    policy, tree = played
    model = policy.model
    adv = [{leaf: a for leaf, a in zip(tree.kept, (0.7, -0.7), strict=True)}]
    loss, grads = _learner_loss(model, tree, adv)
    model.zero_grad(set_to_none=True)
    model.train()
    oracle = _oracle(model, tree, adv)
    oracle.backward()
    assert loss == pytest.approx(float(oracle.detach()), rel=1e-5, abs=1e-8)
    # fp32 packing moves a gradient by rounding only; as in test_packing.py, each tensor
    # must agree to 1e-4 of its largest element (an elementwise rtol fails on near-zeros)
    oracle_grads = _grads(model)
    assert len(grads) == len(oracle_grads)
    diff = max_rel_grad_diff(dict(enumerate(grads)), dict(enumerate(oracle_grads)))
    assert diff <= 1e-4

    (packed,) = pack([tree])
    (full,) = pack([tree], sampled_only=False)
    assert packed.input_ids.tolist() == full.input_ids.tolist()  # typed ids stay as context
    typed = sum(len(n.action_ids) for n in tree.nodes if not n.sampled)
    assert typed > 0 and len(packed.targets) == len(full.targets) - typed > 0


def test_placeholder_logprobs_do_not_change_the_update(played) -> None:
    policy, tree = played
    adv = [{leaf: a for leaf, a in zip(tree.kept, (0.7, -0.7), strict=True)}]
    loss, grads = _learner_loss(policy.model, tree, adv)
    other = tree.model_copy(deep=True)
    for node in other.nodes:
        if not node.sampled:
            node.action_logprobs = [-5.0] * len(node.action_ids)
    loss2, grads2 = _learner_loss(policy.model, other, adv)
    assert loss2 == loss
    for a, b in zip(grads, grads2, strict=True):
        assert torch.equal(a, b)


def test_a_supervised_step_trains_on_typed_turns(played) -> None:
    policy, tree = played
    learner = Learner(policy.model)
    (sft,) = learner.sequences([tree], sampled_only=False)
    (rl,) = learner.sequences([tree])
    typed_tokens = sum(len(n.action_ids) for n in tree.nodes if not n.sampled)
    assert len(sft.targets) == len(rl.targets) + typed_tokens
