"""The rollout policy and the module the learner trains, and how the first sees the second.

With `hf` they are one module in-process, so a sync costs nothing: the next `generate`
already uses the new weights (each collection starts fresh contexts, so no KV computed
under old weights is reused). With `vllm` the learner trains an fp32 transformers copy
of the same checkpoint, and `sync` loads its weights into the engine in place.

With `lora`, peft replaces the adapted linear layers inside the transformers model in
place and the learner trains the `PeftModel` around it, whose only trainable parameters
are the adapters. An `hf` policy holds that same transformers model, so it generates
through the adapters too. Everything that leaves the actor as a full model (`weights()`
for vLLM or remote workers, `save_full` for a shared warm start) has the adapters merged
into plain Hugging Face names, so a copy of the base model without peft can load it.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from ..errors import ConfigError
from ..policy import Policy, PolicyError, make_policy
from ..policy.routing import make_worker_policy
from .config import LoraConfig

_ADAPTER_PREFIX = "lora_"  # peft keeps LoRA's own parameters under lora_A, lora_B, ...
_WRAPPED = "base_layer"  # and moves an adapted layer's original weights under this name


@dataclass
class Actor:
    policy: Policy  # rolls out
    model: torch.nn.Module  # trained by the learner; a peft `PeftModel` when `lora` is set
    tokenizer: Any
    _learner_policy: Policy | None = None  # owns `model` when it is not `policy`'s
    lora: LoraConfig | None = None

    def sync(self) -> None:
        """Make the rollout policy generate with the learner's current weights.

        The learner leaves the module in train mode; rollouts must not apply (LoRA) dropout.
        """
        self.model.eval()
        if self._learner_policy is not None:
            self.policy.load_weights(self.weights())

    def weights(self) -> Iterator[tuple[str, torch.Tensor]]:
        """The full model's weights under Hugging Face checkpoint names, as the rollout
        policy computes with them, for any plain copy of the base model (a vLLM engine,
        a rollout worker) to load.

        LoRA deltas come merged, W + scale · B @ A, into new tensors, and the adapters
        themselves are left out: the trained module is not touched, so this is safe
        between optimizer steps. Tied weights come once, under their first name, as in an
        HF checkpoint (and as safetensors needs: it refuses tensors that share memory).
        """
        base = self._hf_model()
        adapted = {f"{name}.{_WRAPPED}.weight": layer for name, layer in base.named_modules()
                   if hasattr(layer, "get_delta_weight")}
        seen: set[tuple[int, torch.Size]] = set()
        for name, tensor in base.state_dict().items():  # state_dict tensors are detached
            hf = _hf_name(name)
            if hf is None:
                continue
            if name in adapted:
                layer = adapted[name]
                with torch.no_grad():  # not around the yield: grad mode is thread-global
                    tensor = tensor + sum(layer.get_delta_weight(adapter)
                                          for adapter in layer.active_adapters
                                          if adapter in layer.lora_A)
            else:
                key = (tensor.data_ptr(), tensor.shape)
                if key in seen:
                    continue
                seen.add(key)
            yield hf, tensor

    def save_pretrained(self, directory: Path) -> Path:
        """Write the policy as trained so far as a Hugging Face checkpoint that `hf:DIR` or
        `vllm:DIR` loads, for evaluation, benchmarks or further training: `weights()`
        (LoRA merged) plus the config and tokenizer files of the checkpoint it started from."""
        directory.mkdir(parents=True, exist_ok=True)
        source = Path(self.policy.path)
        for item in source.iterdir():
            if item.is_file() and not item.name.startswith("model.safetensors"):
                shutil.copy2(item, directory / item.name)
        self.save_full(directory / "model.safetensors")
        return directory

    def save_full(self, path: Path) -> None:
        """Write `weights()` to one safetensors file that `load_full` reads back, e.g. a
        warm start that several runs (each with fresh adapters, if any) begin from."""
        from safetensors.torch import save_file

        save_file({name: t.contiguous() for name, t in self.weights()}, str(path))

    def load_full(self, path: Path) -> None:
        """Load a full-model safetensors file under Hugging Face names (`init_weights`, a
        `save_full` warm start) into the base weights. LoRA adapters stay as they are:
        fresh ones add nothing, so the model then computes exactly the loaded weights."""
        from safetensors.torch import load_file

        given = load_file(str(path))
        groups: dict[int, list[tuple[str, torch.Tensor]]] = {}  # tied weights share storage
        for name, tensor in self._hf_model().state_dict(keep_vars=True).items():
            hf = _hf_name(name)
            if hf is not None:
                groups.setdefault(tensor.data_ptr(), []).append((hf, tensor))
        known = {hf for group in groups.values() for hf, _ in group}
        plan, missing = [], []
        for group in groups.values():
            source = next((given[hf] for hf, _ in group if hf in given), None)
            hf, target = group[0]
            if source is None:
                missing.append(hf)
            elif source.shape != target.shape:
                raise ConfigError(f"{path}: {hf!r} has shape {tuple(source.shape)}, the "
                                  f"model's is {tuple(target.shape)}")
            else:
                plan.append((target, source))
        unexpected = sorted(given.keys() - known)
        if missing or unexpected:
            raise ConfigError(
                f"{path}: not this model's weights: {len(missing)} missing "
                f"{missing[:3]}, {len(unexpected)} unexpected {unexpected[:3]}")
        with torch.no_grad():
            for target, source in plan:
                target.copy_(source)

    def close(self) -> None:
        self.policy.close()
        if self._learner_policy is not None:
            self._learner_policy.close()

    def _hf_model(self) -> torch.nn.Module:
        """The transformers model: `model` itself, or the one under peft's wrapper (which
        holds the LoRA layers in place of the linear layers they adapt)."""
        return self.model.get_base_model() if self.lora is not None else self.model


def _hf_name(name: str) -> str | None:
    """State-dict `name` as the plain model's checkpoint spells it; None for an adapter's."""
    parts = name.split(".")
    if any(part.startswith(_ADAPTER_PREFIX) for part in parts):
        return None
    return ".".join(part for part in parts if part != _WRAPPED)


def _peft() -> ModuleType:
    try:
        import peft
    except ImportError:
        raise ConfigError("lora needs peft: pip install 'treegym[lora]'") from None
    return peft


def _with_lora(peft: ModuleType, model: torch.nn.Module, lora: LoraConfig) -> torch.nn.Module:
    """`model` with LoRA adapters injected in place, wrapped so that only they train."""
    config = peft.LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                             target_modules=list(lora.target_modules))
    try:
        return peft.get_peft_model(model, config)
    except ValueError as exc:  # e.g. no layer of the model matches target_modules
        raise ConfigError(f"lora: {exc}") from None


def make_actor(spec: str, lora: LoraConfig | None = None) -> Actor:
    """The actor for policy spec `spec`: `tiny`, `hf:PATH?...` or `vllm:PATH?...`; with
    `lora`, the learner trains LoRA adapters on a frozen base model."""
    peft = _peft() if lora is not None else None  # before any model loads
    policy = make_worker_policy(spec)  # one policy, or a route over openai: endpoints
    if policy.backend == "hf":
        actor = Actor(policy, policy.model, policy.tokenizer)
    elif policy.backend in ("vllm", "openai", "routed"):
        try:
            learner = make_policy(f"hf:{policy.path}", dtype="fp32")
        except (PolicyError, OSError) as exc:
            policy.close()
            raise ConfigError(
                f"policy {spec!r}: the learner trains a transformers copy of the served "
                f"checkpoint and could not load one from {policy.path}: {exc}"
                + (" (for openai: pass ?tokenizer=PATH of the served checkpoint)"
                   if policy.backend != "vllm" else "")
            ) from None
        actor = Actor(policy, learner.model, learner.tokenizer, learner)
    else:
        policy.close()
        raise ConfigError(f"policy {spec!r}: the trainer needs weights it can update: "
                          "tiny, hf:PATH, vllm:PATH or openai: endpoints")
    if peft is not None and lora is not None:
        try:
            actor.model = _with_lora(peft, actor.model, lora)
        except BaseException:
            actor.close()
            raise
        actor.lora = lora
    return actor
