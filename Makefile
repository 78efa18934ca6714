# cortexgraph: two commands from a fresh clone.
#   make demo   set up .venv, make the demo phantom cohort, run the pipeline end to end on it (as tasks
#               of a local Dask cluster, one worker process per core: cortexgraph.execution)
#   make test   set up .venv and the web app's JavaScript libraries, run ruff, mypy and pytest
#   make web    install the web app's pinned JavaScript libraries (npm ci) into cortexgraph/web/static/vendor
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

.PHONY: demo test lint typecheck venv web clean

venv: $(STAMP)

# The page of `cortexgraph serve` loads these files from static/vendor (never from the network):
# npm ci installs the versions pinned in web/frontend/package-lock.json, then they are copied.
FRONTEND := web/frontend
VENDOR := cortexgraph/web/static/vendor
WEB_STAMP := $(VENDOR)/.installed

web: $(WEB_STAMP)

$(WEB_STAMP): $(FRONTEND)/package.json $(FRONTEND)/package-lock.json
	cd $(FRONTEND) && npm ci --no-audit --no-fund --loglevel=error
	rm -rf $(VENDOR) && mkdir -p $(VENDOR)/openseadragon $(VENDOR)/annotorious $(VENDOR)/niivue
	cp $(FRONTEND)/node_modules/openseadragon/build/openseadragon/openseadragon.min.js $(VENDOR)/openseadragon/
	cp -r $(FRONTEND)/node_modules/openseadragon/build/openseadragon/images $(VENDOR)/openseadragon/
	cp $(FRONTEND)/node_modules/@annotorious/openseadragon/dist/annotorious-openseadragon.js \
	   $(FRONTEND)/node_modules/@annotorious/openseadragon/dist/annotorious-openseadragon.css $(VENDOR)/annotorious/
	cp $(FRONTEND)/node_modules/@niivue/niivue/dist/niivue.umd.js $(VENDOR)/niivue/
	cp $(FRONTEND)/node_modules/openseadragon/LICENSE.txt $(VENDOR)/openseadragon/
	cp $(FRONTEND)/node_modules/@annotorious/openseadragon/LICENSE* $(VENDOR)/annotorious/ 2>/dev/null || true
	cp $(FRONTEND)/node_modules/@niivue/niivue/LICENSE* $(VENDOR)/niivue/ 2>/dev/null || true
	touch $(WEB_STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# CPU build of torch first, so no dependency pulls CUDA wheels.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test,web,cluster,phantom,scans]"
	touch $(STAMP)

demo: $(STAMP) $(WEB_STAMP)
	$(VENV)/bin/cortexgraph demo $(DEMO_DIR)

lint: $(STAMP)
	$(VENV)/bin/ruff check cortexgraph tests benchmarks

# static types of the package ([tool.mypy] in pyproject.toml; cortexgraph ships py.typed)
typecheck: $(STAMP)
	$(PY) -m mypy cortexgraph

test: $(STAMP) $(WEB_STAMP) lint typecheck
	$(VENV)/bin/pytest -q tests

clean:
	rm -rf $(VENV) $(DEMO_DIR) $(VENDOR) $(FRONTEND)/node_modules
