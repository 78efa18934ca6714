# cortexgraph: two commands from a fresh clone.
#   make demo   set up .venv, make the demo phantom cohort, run the pipeline end to end on it (as tasks
#               of a local Dask cluster, one worker process per core: cortexgraph.execution)
#   make test   set up .venv, run ruff and pytest
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo-output
# One thread per process: the demo runs stages in one worker process per core. In `cortexgraph
# demo` logs, an SCL epoch took 30-55 s with 2 threads while other jobs loaded the 2-core machine and
# 0.9 s with 1 thread at lower load (loads differed, so not all of that is the thread count).
export OMP_NUM_THREADS ?= 1
export MKL_NUM_THREADS ?= 1

.PHONY: demo test lint venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# CPU build of torch first, so no dependency pulls CUDA wheels.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test,cluster]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/cortexgraph demo $(DEMO_DIR)

lint: $(STAMP)
	$(VENV)/bin/ruff check cortexgraph tests benchmarks

test: $(STAMP) lint
	$(VENV)/bin/pytest -q tests

clean:
	rm -rf $(VENV) $(DEMO_DIR)
