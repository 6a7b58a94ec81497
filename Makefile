# Two commands on a fresh machine: `make run` (the check) and `make test` (the suite).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The torch the set-up installs. On the project's machines torch==2.13.0 is a CPU build on disk;
# on a GPU machine, run `gpucheck recommend` and install the build it names instead.
# TORCH is split into words, so it may carry pip options:
#   make run TORCH="torch==2.9.1 --index-url https://download.pytorch.org/whl/cu128"
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.installed
# Holds the TORCH the venv was built with; rewritten only when TORCH changes, so that a new
# TORCH reinstalls and an unchanged one does not.
TORCH_STAMP := $(VENV)/.torch

.PHONY: run test lint bench fuzz gpu-check clean FORCE

$(TORCH_STAMP): FORCE
	$(shell mkdir -p $(VENV))$(file >$@.new,$(TORCH))
	@if cmp -s $@.new $@; then rm -f $@.new; else mv -f $@.new $@; fi

$(STAMP): pyproject.toml $(TORCH_STAMP)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# An older checkout installed itself as "gpucheck" (on PyPI an unrelated project, whose
	# files would clash with these): take it out first.
	$(BIN)/python -m pip uninstall -q -y gpucheck 2>/dev/null || true
	# torch first and pinned, so that the extras cannot pull a multi-GB CUDA build. xargs splits
	# TORCH into words as pip's command line (quotes honoured), without a shell between.
	xargs $(BIN)/python -m pip install -q < $(TORCH_STAMP)
	$(BIN)/python -m pip install -q -e ".[bench,test]"
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m gpucheck $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check gpucheck finetune tests benchmarks
	$(BIN)/ruff format --check gpucheck finetune tests benchmarks

bench: $(STAMP)
	# Byte-compile first, as an installed wheel is: this machine sets PYTHONDONTWRITEBYTECODE.
	$(BIN)/python -m compileall -q gpucheck finetune
	$(BIN)/python benchmarks/probe_speed.py --runs 9
	$(BIN)/python benchmarks/fault_times.py
	$(BIN)/python benchmarks/fleet_aggregate.py
	$(BIN)/python benchmarks/node_ddp.py
	$(BIN)/python -m finetune.compare --seeds 42,1,2,3,4 --random-too $(ARGS_COMPARE)

# The one script to run on a lent GPU machine: it has torch, transformers, nvidia-ml-py, rich,
# packaging and pytest but reaches no package index, so no venv and no build isolation.
gpu-check:
	bash scripts/gpu-check.sh

clean:
	rm -rf $(VENV) build dist .pytest_cache .ruff_cache

# Minutes of hypothesis fuzzing of every parser (snapshot JSON, /proc and /sys text, nvidia-smi
# CSV, nvcc, cuDNN headers, CoNLL); `make test` runs the same tests with a few hundred examples.
fuzz: $(STAMP)
	GPUCHECK_FUZZ_EXAMPLES=$${EXAMPLES:-20000} $(BIN)/python -m pytest -q -k fuzz $(ARGS)
