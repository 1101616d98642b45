# Everything runs from a project-local virtual environment, created and refreshed only when pyproject.toml changes.
# `make bench` installs what a benchmark needs; `make test` adds the test tools (pytest, pytest-xdist, ruff,
# hypothesis, Ray).
# TORCH_INDEX (e.g. https://download.pytorch.org/whl/cpu) takes the pinned torch and torchvision from that index
# first: a CPU-only build instead of the default CUDA one.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RUN_STAMP := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test
TORCH_INDEX ?=

.PHONY: bench test lint format perf parity gpu-check clean

$(RUN_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(if $(TORCH_INDEX),$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1 --index-url $(TORCH_INDEX))
	$(PY) -m pip install --quiet -e .
	touch $(RUN_STAMP)

$(TEST_STAMP): $(RUN_STAMP)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(TEST_STAMP)

bench: $(RUN_STAMP)  ## the quick preset, offline, on the embedded digits dataset
	$(PY) run_bench.py $(ARGS)

# the tests whose numbers depend on the CPU's kernels, run again under ATen's portable kernels: two CPU kinds' worth
# of numerics on one machine (the whole suite passes under both; this keeps CI's time down)
NUMERIC_TESTS ?= tests/test_int8_kernels.py tests/test_compress.py tests/test_measure.py
# the suite in two processes, a test file to each at a time (pytest-xdist): every test runs single-threaded, so two
# use both cores of a 2-core machine; TEST_WORKERS=0 runs it in this one
TEST_WORKERS ?= 2

test: $(TEST_STAMP)
	$(PY) -m pytest $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile) $(ARGS)
	$(if $(ARGS),,ATEN_CPU_CAPABILITY=default $(PY) -m pytest $(NUMERIC_TESTS))

lint: $(TEST_STAMP)  ## ruff, and the layers contracts of pyproject.toml (an upward import fails)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

format: $(TEST_STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

perf: $(RUN_STAMP)  ## the training-loop benchmark against an original-style loop
	$(PY) -m bench.harness.perf $(ARGS)

parity: $(RUN_STAMP)  ## the quality of both loops' models over seeds
	$(PY) -m bench.harness.parity $(ARGS)

# the one-call GPU verification, its default stages into one folder (--stages picks others: paper, parity); needs no
# venv: on a machine with its own torch, `make gpu-check GPU_PY=python3`
GPU_PY ?= $(if $(wildcard $(PY)),$(PY),python3)
gpu-check:  ## env, equivalence, perf, coverage, stacked, paper-3-seeds (the default stages): one folder
	PYTHONPATH=. $(GPU_PY) -m bench.harness.gpu_check $(ARGS)

clean:
	rm -rf $(VENV) results
