# Everything runs from a project-local virtual environment, created and refreshed only when pyproject.toml changes.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: bench test lint format perf parity gpu-check clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]' --config-settings editable_mode=compat
	touch $(STAMP)

bench: $(STAMP)  ## the quick preset, offline, on the embedded digits dataset
	$(PY) run_bench.py $(ARGS)

test: $(STAMP)
	$(PY) -m pytest $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

perf: $(STAMP)  ## the training-loop benchmark against an original-style loop
	$(PY) -m bench.perf $(ARGS)

parity: $(STAMP)  ## the quality of both loops' models over seeds
	$(PY) -m bench.parity $(ARGS)

# the one-call GPU verification; needs no venv: on a machine with its own torch, `make gpu-check GPU_PY=python3`
GPU_PY ?= $(if $(wildcard $(PY)),$(PY),python3)
gpu-check:  ## env, graph equivalence, loop benchmark, paper preset (one seed), short parity: one folder
	PYTHONPATH=. $(GPU_PY) -m bench.gpu_check $(ARGS)

clean:
	rm -rf $(VENV) results
