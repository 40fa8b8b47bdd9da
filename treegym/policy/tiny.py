"""The `tiny` model: a small random-init Llama and a byte-level tokenizer, built offline.

No model hub is reachable from CI, yet every backend must be tested on real weights
loaded the way a real checkpoint is. So treegym builds a checkpoint in Hugging Face
layout (config.json, model.safetensors, tokenizer.json, tokenizer_config.json with a
Hermes/Qwen-style chat template that renders tools), deterministically from a seed.
The `tiny` spec uses a copy cached under `$TREEGYM_CACHE` (default ~/.cache/treegym).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .cache import cached, save_pretrained

SEED = 0
VOCAB_SIZE = 512
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# Sized so that prefill compute, not Python overhead, dominates a 512-token prefix on CPU
# (the fork-vs-recompute bench measures exactly that), yet a vLLM engine starts quickly.
MODEL_SHAPE = dict(
    hidden_size=512,
    intermediate_size=1536,
    num_hidden_layers=4,
    num_attention_heads=8,
    num_key_value_heads=2,
    max_position_embeddings=4096,
)
# Larger than the usual 0.02 so the random model's next-token distributions are peaked
# enough that greedy decoding is not decided by float rounding across backends.
INIT_RANGE = 0.1

CHAT_TEMPLATE = r"""
{%- if tools %}
{{- '<|im_start|>system\n' }}
{%- if messages[0].role == 'system' %}{{- messages[0].content + '\n\n' }}{%- endif %}
{{- '# Tools\n\nYou may call one or more functions. ' }}
{{- 'Their signatures are inside <tools></tools>:\n<tools>' }}
{%- for tool in tools %}{{- '\n' + (tool | tojson) }}{%- endfor %}
{{- '\n</tools>\n\nFor each call, write a JSON object with the name and arguments ' }}
{{- 'inside <tool_call></tool_call>:\n<tool_call>\n' }}
{{- '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>\n' }}
{{- 'End with <answer>...</answer>.<|im_end|>\n' }}
{%- elif messages[0].role == 'system' %}
{{- '<|im_start|>system\n' + messages[0].content + '<|im_end|>\n' }}
{%- endif %}
{%- for message in messages %}
{%- if message.role == 'system' and loop.first %}
{%- elif message.role == 'tool' %}
{%- if loop.first or messages[loop.index0 - 1].role != 'tool' %}
{{- '<|im_start|>user' }}
{%- endif %}
{{- '\n<tool_response>\n' + message.content + '\n</tool_response>' }}
{%- if loop.last or messages[loop.index0 + 1].role != 'tool' %}{{- '<|im_end|>\n' }}{%- endif %}
{%- else %}
{{- '<|im_start|>' + message.role + '\n' + (message.content or '') }}
{%- for call in message.tool_calls or [] %}
{%- set fn = call.function if call.function is defined else call %}
{%- set args = fn.arguments if fn.arguments is string else (fn.arguments | tojson) %}
{{- '\n<tool_call>\n{"name": "' + fn.name + '", "arguments": ' + args + '}\n</tool_call>' }}
{%- endfor %}
{{- '<|im_end|>\n' }}
{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}
""".strip()

# Text the byte-level BPE learns its merges from: the shapes of chats, tools and answers.
_CORPUS = [
    CHAT_TEMPLATE,
    '<tool_call>\n{"name": "move", "arguments": {"direction": "north"}}\n</tool_call>',
    '<tool_call>\n{"name": "python", "arguments": {"code": "print(x + 1)"}}\n</tool_call>',
    "<tool_response>\nYou are at (2, 3). Walls: north, east.\n</tool_response>",
    "<answer>42</answer> The answer is 42. Let me think step by step about the maze.",
    '{"type": "function", "function": {"name": "run", "description": "Run a shell command.",'
    ' "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}},'
    ' "required": ["cmd"]}}}',
    "The quick brown fox jumps over the lazy dog. 0123456789 ls -la && cat file.txt",
]


def _build_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=CHAT_TEMPLATE,
        model_max_length=MODEL_SHAPE["max_position_embeddings"],
    )


def init_tiny(path: str | os.PathLike[str], *, seed: int = SEED) -> Path:
    """Build the tiny checkpoint at `path` (HF layout) and return the path.

    Same seed, same weights and tokenizer. The directory is written whole or not at all.
    """
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    tokenizer = _build_tokenizer()
    vocab = tokenizer.get_vocab()
    end_ids = [vocab["<|im_end|>"], vocab["<|endoftext|>"]]
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        initializer_range=INIT_RANGE,
        bos_token_id=None,
        eos_token_id=end_ids,
        pad_token_id=vocab["<|endoftext|>"],
        tie_word_embeddings=False,
        **MODEL_SHAPE,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).to(torch.float32).eval()
    model.generation_config = GenerationConfig(
        eos_token_id=end_ids, pad_token_id=vocab["<|endoftext|>"]
    )
    return save_pretrained(path, model, tokenizer)


def _fingerprint() -> str:
    """Changes whenever anything that shapes the checkpoint changes, so caches never go stale."""
    recipe = repr(
        (SEED, VOCAB_SIZE, SPECIAL_TOKENS, MODEL_SHAPE, INIT_RANGE, CHAT_TEMPLATE, _CORPUS)
    )
    return hashlib.sha256(recipe.encode()).hexdigest()[:10]


def tiny_path() -> Path:
    """The cached tiny checkpoint, built on first use."""
    return cached(f"tiny-{_fingerprint()}", init_tiny)
