# LSTM Bench. `make` alone lists the targets; each one installs what it needs first (into .venv).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
BENCH_ARGS ?=
PYTEST_ARGS ?=
TEST_WORKERS ?= auto
CI_BENCH_DIR := results/ci
BASELINE ?= 0001
LINTED := bench impls tests tools

.PHONY: help setup lint format docs test test-fast bench bench-pixel bench-scaling bench-ci bench-compare \
        bench-gate bench-baseline gpu-check gpu-deps kernels clean
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

# Apply ruff's safe fixes in place (import order, pyupgrade): what `make lint` would otherwise report.
format: setup
	$(PY) -m ruff check --fix $(LINTED)

# Regenerate docs/results-format.md from the schema, metric and knob tables (a test checks it is current).
docs: setup
	$(PY) -m tools.results_format

# The whole test suite (CPU is enough; fetches MNIST once). PYTEST_ARGS adds options, e.g. --durations=15.
test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

# The fast lane: the suite without the slow tests (compiling, Ray, worker processes, long interpreter runs) and network,
# over TEST_WORKERS processes (pytest-xdist; a test file stays on one worker, so its module fixtures run once).
test-fast: setup
	$(PY) -m pytest -q -m 'not slow and not network' -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

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

# Micro-benchmarks (pytest-benchmark), with each backend's ratio to cudnn for bench-gate; JSON saved under results/ci/.
# Installed plugin backends join in; PLUGINS=a.py:pkg.mod adds plugin files or modules (docs/plugins.md).
# BENCH_CI_ARGS narrows it, e.g. BENCH_CI_ARGS="-k ratio_to_cudnn": only what bench-gate reads.
BENCH_CI_ARGS ?=
PLUGINS ?=
bench-ci: setup
	LSTM_BENCH_PLUGINS=$(PLUGINS) $(PY) -m pytest tests/benchmarks -q -p no:cacheprovider --timeout 1800 $(BENCH_CI_ARGS) \
	  --benchmark-only --benchmark-min-rounds=5 --benchmark-max-time=0.5 --benchmark-warmup=on \
	  --benchmark-storage=file://$(CI_BENCH_DIR) --benchmark-autosave --benchmark-columns=min,median,iqr,ops,rounds

# The CI gate (docs/history.md): fails (exit 1) when, in the newest bench-ci run, a backend's step time as a
# ratio to cudnn's (measured in alternation in that session) grew past 1.5x the committed baseline's and the
# samples' Mann-Whitney test agrees. Run after bench-ci.
bench-gate: setup
	$(PY) -m bench bench-gate --storage $(CI_BENCH_DIR) --baseline $(CI_BENCH_DIR)/baseline.json

# Updates the gate's baseline: runs bench-ci, then writes its ratios for this machine kind (cpu, or the GPU)
# into results/ci/baseline.json. Commit that file.
bench-baseline: bench-ci
	$(PY) -m bench bench-gate --storage $(CI_BENCH_DIR) --baseline $(CI_BENCH_DIR)/baseline.json --update

# Compare the newest saved benchmark run with BASELINE (a saved run's id or file, e.g. 0001).
bench-compare: setup
	$(PY) -m bench bench-compare --storage $(CI_BENCH_DIR) --baseline $(BASELINE)

# On a CUDA machine: parity of every LSTM backend against torch.nn.LSTM, what ran, then timings
# (tables under ./results/gpu-check/). Plain $(PYTHON): a lent GPU machine has torch and triton, not the venv.
gpu-check:
	$(PYTHON) -m bench gpu-check

# pytest as pure-Python files in .gpu-deps/, to carry to a GPU machine that has torch but no pytest
# (.ci/gpu-session explains the one call that runs gpu-check and the CUDA tests there).
gpu-deps: setup
	$(PY) -m pip install --quiet --no-deps --target .gpu-deps pytest pluggy iniconfig packaging pygments exceptiongroup tomli \
	  pytest-timeout

KERNEL_MATRIX := --dtypes float32,bfloat16,float16,float64 --hidden 32,64,128,256,512 --batch 50,128 --proj-size 0,16 \
  --tf32 both --presets
# Compile every Triton kernel ahead of time for sm_80/86/89/90 (no GPU): 4 dtypes x hidden 32-512 x batch 50/128,
# without and with a 16-wide projection, float32 with tf32 off and on, plus the presets' shapes; tables into results/reference/kernels/. Exits 1 if a
# launch cannot run on one of them. Compiles are cached (~/.cache/lstm-bench/kernels), so a rerun is quick.
kernels: setup
	$(PY) -m bench kernels $(KERNEL_MATRIX) --out results/reference/kernels

# Remove .venv and the caches.
clean:
	rm -rf $(VENV) .pytest_cache .benchmarks .mypy_cache .ruff_cache
