# LSTM Bench. `make test` and `make bench` each install what they need first (into .venv).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
BENCH_ARGS ?=
CI_BENCH_DIR := results/ci

.PHONY: setup test test-fast bench bench-pixel bench-scaling bench-ci bench-compare gpu-check gpu-deps clean

# Reinstall only when the project's requirements change.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -e '.[dev]'
	touch $@

setup: $(STAMP)

test: setup
	$(PY) -m pytest -q

# Skips the test that downloads real MNIST.
test-fast: setup
	$(PY) -m pytest -q -m 'not network'

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

# Micro-benchmarks (pytest-benchmark); JSON saved under results/ci/. Installed plugin backends join in;
# PLUGINS=a.py:pkg.mod adds plugin files or modules (docs/plugins.md).
PLUGINS ?=
bench-ci: setup
	LSTM_BENCH_PLUGINS=$(PLUGINS) $(PY) -m pytest tests/benchmarks -q -p no:cacheprovider \
	  --benchmark-only --benchmark-min-rounds=5 --benchmark-max-time=0.5 --benchmark-warmup=on \
	  --benchmark-storage=file://$(CI_BENCH_DIR) --benchmark-autosave --benchmark-columns=min,median,iqr,ops,rounds

# Compare the newest saved benchmark run with BASELINE (a saved run's id or file, e.g. 0001).
BASELINE ?= 0001
bench-compare: setup
	$(PY) -m bench bench-compare --storage $(CI_BENCH_DIR) --baseline $(BASELINE)

# On a CUDA machine: parity of every LSTM backend against torch.nn.LSTM, what ran, then timings
# (tables under ./results/gpu-check/). Plain $(PYTHON): a lent GPU machine has torch and triton, not the venv.
gpu-check:
	$(PYTHON) -m bench gpu-check

# pytest as pure-Python files in .gpu-deps/, to carry to a GPU machine that has torch but no pytest
# (.ci/gpu-session explains the one call that runs gpu-check and the CUDA tests there).
gpu-deps: setup
	$(PY) -m pip install --quiet --no-deps --target .gpu-deps pytest pluggy iniconfig packaging pygments exceptiongroup tomli

clean:
	rm -rf $(VENV) .pytest_cache .benchmarks
