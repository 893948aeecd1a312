# LSTM Bench. `make` alone lists the targets; each one installs what it needs first (into .venv).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
BENCH_ARGS ?=
PYTEST_ARGS ?=
CI_BENCH_DIR := results/ci
BASELINE ?= 0001
LINTED := bench impls tests tools

.PHONY: help setup lint format format-check docs test test-fast bench bench-pixel bench-scaling bench-ci bench-compare \
        gpu-check gpu-deps clean
.DEFAULT_GOAL := help

# This list: every target with the comment above it.
help:
	@awk '/^# /{ note = note (note ? " " : "") substr($$0, 3); next } \
	      /^[a-z][a-z-]*:/{ if (note) printf "  %-14s %s\n", substr($$1, 1, length($$1) - 1), note } { note = "" }' \
	     $(MAKEFILE_LIST)

# Reinstall only when the project's requirements change.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -e '.[dev]'
	touch $@

# Create .venv and install the project with its dev extras (once; again when pyproject.toml changes).
setup: $(STAMP)

# Lint (ruff check) and type-check (mypy on bench/ and impls/); both configured in pyproject.toml.
lint: setup
	$(PY) -m ruff check $(LINTED)
	$(PY) -m mypy

# Sort imports and reformat the code in place (ruff).
format: setup
	$(PY) -m ruff check --select I --fix $(LINTED)
	$(PY) -m ruff format $(LINTED)

# Fail if `make format` would change anything.
format-check: setup
	$(PY) -m ruff format --check $(LINTED)

# Regenerate docs/results-format.md from the schema, metric and knob tables (a test checks it is current).
docs: setup
	$(PY) -m tools.results_format

# The whole test suite (CPU is enough; fetches MNIST once). PYTEST_ARGS adds options, e.g. --durations=15.
test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

# The fast lane: the suite without the slow tests (compiling, Ray, worker processes, long interpreter runs) and network.
test-fast: setup
	$(PY) -m pytest -q -m 'not slow and not network' $(PYTEST_ARGS)

# Train every backend on MNIST with the default config, then write the report of that run.
bench: setup
	$(PY) -m bench run --report $(BENCH_ARGS)

# Pixel MNIST (784 steps; `bench list --experiments` shows the presets). Long: meant for a GPU.
bench-pixel: setup
	$(PY) -m bench run --experiment pixel --report $(BENCH_ARGS)

# Step time and memory against hidden size, then against batch size (each on the first 6,000 images).
bench-scaling: setup
	$(PY) -m bench run --experiment scaling-hidden --report $(BENCH_ARGS)
	$(PY) -m bench run --experiment scaling-batch --report $(BENCH_ARGS)

# Micro-benchmarks (pytest-benchmark); JSON saved under results/ci/.
bench-ci: setup
	$(PY) -m pytest tests/benchmarks -q -p no:cacheprovider --timeout 1800 \
	  --benchmark-only --benchmark-min-rounds=5 --benchmark-max-time=0.5 --benchmark-warmup=on \
	  --benchmark-storage=file://$(CI_BENCH_DIR) --benchmark-autosave --benchmark-columns=min,median,iqr,ops,rounds

# Compare the newest saved benchmark run with BASELINE (a saved run's id or file, e.g. 0001).
bench-compare: setup
	$(PY) -m bench bench-compare --storage $(CI_BENCH_DIR) --baseline $(BASELINE)

# On a CUDA machine: compiled-kernel parity tests, then do_bench timings of cudnn, loop and triton.
gpu-check:
	$(PYTHON) -m bench.gpu_check

# pytest as pure-Python files in .gpu-deps/, to carry to a GPU machine that has torch but no pytest
# (.ci/gpu-session explains the one call that runs gpu-check and the CUDA tests there).
gpu-deps: setup
	$(PY) -m pip install --quiet --no-deps --target .gpu-deps pytest pluggy iniconfig packaging pygments exceptiongroup tomli \
	  pytest-timeout

# Remove .venv and the caches.
clean:
	rm -rf $(VENV) .pytest_cache .benchmarks .mypy_cache .ruff_cache
