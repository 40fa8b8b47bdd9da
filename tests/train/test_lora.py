"""LoRA training through peft: only adapters train, what leaves the actor is the merged
model under plain Hugging Face names, and resume stays exact."""

import math
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

pytest.importorskip("transformers")
rollout = pytest.importorskip("treegym.rollout")
pytest.importorskip("peft", reason="LoRA needs peft: pip install 'treegym[lora]'")

from train_helpers import assert_resume_is_exact, small  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402

from treegym.learn import Learner, OptimConfig  # noqa: E402
from treegym.policy import SamplingParams  # noqa: E402
from treegym.policy.tiny import tiny_path  # noqa: E402
from treegym.train import ConfigError, load_config  # noqa: E402
from treegym.train.actor import make_actor  # noqa: E402
from treegym.train.config import LoraConfig  # noqa: E402

LORA = {"r": 4, "alpha": 8}


def adapter(name: str) -> bool:
    return ".lora_" in name


def test_only_adapters_train():
    torch.manual_seed(0)
    actor = make_actor("tiny", LoraConfig(**LORA))
    try:
        model = actor.model
        learner = Learner(model, optim=OptimConfig(lr=1e-3))
        names = {id(p): n for n, p in model.named_parameters()}
        assert learner.params and all(adapter(names[id(p)]) for p in learner.params)
        assert len(learner.params) == sum(map(adapter, names.values()))
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        actor.sync()
        trees = rollout.collect("treegym/Maze-v0", actor.policy, rollout.ChainSampler(n=2), 2,
                                seed=1, params=SamplingParams(max_tokens=8, seed=1),
                                env_kwargs={"size": 2, "max_turns": 2}).trees
        # Rewards of an untrained model are all alike; opposite advantages still give a
        # gradient, which is all this test needs.
        advantages = [{leaf: (-1.0) ** j for j, leaf in enumerate(t.kept)} for t in trees]
        metrics = learner.step(trees, advantages)
        assert metrics["grad_norm"] > 0 and all(math.isfinite(v) for v in metrics.values())
        after = dict(model.named_parameters())
        for name, value in before.items():
            if not adapter(name):
                assert torch.equal(after[name], value), name  # the base, bit for bit
        b_names = [n for n in before if ".lora_B." in n]
        assert all(not before[n].any() for n in b_names)  # B starts at zero ...
        assert any(after[n].any() for n in b_names)  # ... and the step moved it
    finally:
        actor.close()


def test_weights_are_merged_under_hf_names():
    torch.manual_seed(0)
    actor = make_actor("tiny", LoraConfig(**LORA))
    try:
        trainable = [n for n, p in actor.model.named_parameters() if p.requires_grad]
        assert trainable and all(map(adapter, trainable))
        # In float64: in float32, W x + s B A x and (W + s B A) x round apart by ~1e-4 here.
        model = actor.model.double().eval()
        with torch.no_grad():
            for name, param in model.named_parameters():
                if ".lora_B." in name:
                    param.normal_(std=0.05)  # as if trained: the adapters now matter
        ids = torch.randint(0, 512, (2, 24))
        with torch.no_grad():
            logits = model(input_ids=ids).logits
            # The hf rollout policy holds the very module peft adapted, so it samples with LoRA.
            assert actor.policy.model is model.get_base_model()
            assert torch.equal(actor.policy.model(input_ids=ids).logits, logits)
            with model.disable_adapter():
                assert (model(input_ids=ids).logits - logits).abs().max() > 0.1

        state = {k: v.clone() for k, v in model.state_dict().items()}
        weights = dict(actor.weights())
        after = model.state_dict()  # the trained module is as it was
        assert state.keys() == after.keys() and all(torch.equal(state[k], after[k]) for k in state)
        plain = AutoModelForCausalLM.from_pretrained(tiny_path()).double()
        assert list(weights) == list(plain.state_dict())
        plain.load_state_dict(weights)
        with torch.no_grad():
            assert (plain(input_ids=ids).logits - logits).abs().max() <= 1e-5
    finally:
        actor.close()


def test_full_weights_round_trip_into_base(tmp_path):
    """A saved warm start (LoRA merged) loads as init_weights under fresh adapters."""
    torch.manual_seed(0)
    first = make_actor("tiny", LoraConfig(**LORA))
    second = make_actor("tiny", LoraConfig(**LORA))
    try:
        with torch.no_grad():
            for name, param in first.model.named_parameters():
                if ".lora_B." in name:
                    param.normal_(std=0.05)
        first.save_full(tmp_path / "full.safetensors")
        second.load_full(tmp_path / "full.safetensors")
        merged = dict(first.weights())
        assert all(torch.equal(merged[k], v) for k, v in second.weights())
        save_file({"other.weight": torch.zeros(1)}, str(tmp_path / "wrong.safetensors"))
        with pytest.raises(ConfigError, match="39 missing .* 1 unexpected"):
            second.load_full(tmp_path / "wrong.safetensors")
    finally:
        first.close()
        second.close()


def test_resume_is_exact_with_lora(tmp_path):
    again = assert_resume_is_exact(small(tmp_path, lora=LORA))
    assert any(map(adapter, again))
    original = load_file(str(tiny_path() / "model.safetensors"))  # the base never trained
    base = {k.removeprefix("base_model.model.").replace(".base_layer", ""): v
            for k, v in again.items() if not adapter(k)}
    assert base.keys() == original.keys()
    assert all(torch.equal(base[k], original[k]) for k in base)


def test_bad_lora_config_is_clear(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("env: treegym/Maze-v0\nlora: {r: 0, rank: 8}\n")
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    text = str(err.value)
    assert "bad.yaml" in text and "lora.r: Input should be greater than or equal to 1" in text
    assert "lora.rank: unknown key 'rank'; no valid key is close to it; keys of lora: r, " \
        "alpha, dropout, target_modules" in text
    ok = tmp_path / "ok.yaml"
    ok.write_text("env: treegym/Maze-v0\nlora: {}\n")
    assert load_config(ok).lora == LoraConfig()
    with pytest.raises(ConfigError, match="lora: "):
        make_actor("tiny", LoraConfig(target_modules=["no_such_layer"]))


def test_missing_peft_is_clear(monkeypatch):
    monkeypatch.setitem(sys.modules, "peft", None)  # import peft now raises ImportError
    with pytest.raises(ConfigError, match=r"lora needs peft: pip install 'treegym\[lora\]'"):
        make_actor("tiny", LoraConfig())
