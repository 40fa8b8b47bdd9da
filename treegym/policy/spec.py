"""`make_policy(spec)`: one string names a backend, a model, and its options.

    tiny                              the offline tiny model on transformers
    smollm2                           SmolLM2-135M-Instruct on transformers (built offline)
    hf:PATH                           transformers; PATH may be `tiny` or `smollm2`
    hf:PATH?dtype=bf16&device=cuda    options after `?`, the same as keyword arguments
    vllm:PATH                         the vLLM engine in-process; PATH as for hf:
    openai:URL#MODEL                  an OpenAI-compatible server, e.g. `vllm serve`

Backends import their heavy dependencies only when chosen, so `import treegym` stays
light and an `openai:` user needs no torch on the client beyond the tokenizer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from pydantic import ValidationError

from .base import Policy, PolicyError
from .smollm2 import smollm2_path
from .tiny import tiny_path

BACKENDS = ("hf", "vllm", "openai")


BUILT = {"tiny": tiny_path, "smollm2": smollm2_path}  # models treegym builds and caches


def _model_path(text: str) -> Path:
    return BUILT[text]() if text in BUILT else Path(text).expanduser()


def _split_options(spec: str) -> tuple[str, dict[str, str]]:
    body, _, query = spec.partition("?")
    return body, dict(parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)))


def make_policy(spec: str, **options: Any) -> Policy:
    """The policy `spec` names; keyword arguments override options given in the spec."""
    try:
        body, spec_options = _split_options(spec)
    except ValueError:
        raise PolicyError(
            f"policy spec {spec!r}: options after '?' must be key=value&..."
        ) from None
    options = {**spec_options, **options}
    if body in BUILT:
        body = f"hf:{body}"
    backend, sep, target = body.partition(":")
    if not sep or backend not in BACKENDS or not target:
        raise PolicyError(
            f"unknown policy spec {spec!r}; use one of: tiny, smollm2, hf:PATH, vllm:PATH, "
            "openai:URL#MODEL (options as ?key=value&...)"
        )
    try:
        if backend == "hf":
            from .hf import HFPolicy

            return HFPolicy(_model_path(target), **options)
        if backend == "vllm":
            from .vllm_engine import VLLMPolicy

            return VLLMPolicy(_model_path(target), **options)
        url, sep, model = target.partition("#")
        if not sep or not model:
            raise PolicyError(f"policy spec {spec!r}: write openai:URL#MODEL")
        from .openai_http import OpenAIPolicy

        return OpenAIPolicy(url, model, **options)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'option'}: {e['msg']}" for e in exc.errors()
        )
        raise PolicyError(f"policy spec {spec!r}: bad options: {problems}") from None
