# rsft — two commands on a fresh machine:  make demo   |   make test
PY       ?= python3
VENV     := .venv
BIN      := $(VENV)/bin
STAMP    := $(VENV)/.installed
DEMO_DIR ?= .rsft/demo

.PHONY: demo test test-all test-fast install bench clean ui-check

$(STAMP): pyproject.toml constraints.txt
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt torch
	$(BIN)/pip install -q -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

## demo: synthesize a factory, run the nightly retrain twice (two nights; the second chooses its recipe by grouped CV), show the registry
demo: $(STAMP)
	$(BIN)/rsft synth --config examples/factory.yaml --out $(DEMO_DIR)/raw
	$(BIN)/rsft retrain --config examples/factory.yaml
	$(BIN)/rsft synth --config examples/factory.yaml --out $(DEMO_DIR)/raw --night 2
	$(BIN)/rsft retrain --config examples/factory.yaml --set adapt.enabled=true
	$(BIN)/rsft history --config examples/factory.yaml

## ui-check: after `make demo`, open the MLflow UI on loopback over the demo's state, check the night
## through its REST API and save screenshots of its pages and of the Prefect UI's newest night (headless Chromium
## from the system; skipped with one line when absent) to .rsft/ui-check
ui-check: $(STAMP)
	$(BIN)/python scripts/ui_check.py --state .rsft --out .rsft/ui-check --prefect

## test: the suite CI runs (~10–12 minutes on 2 cores): everything but the cases marked slow — it
## still retrains end to end (twice), kills a retrain at registration, and runs real Prefect/MLflow
test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

## test-all: every case, the slow ones too (kills at every point, 4 machines against loopback
## Prefect + MLflow servers, S3 artifacts, Dask) — about twice as long
test-all: $(STAMP)
	$(BIN)/python -m pytest -q

test-fast: test

bench: $(STAMP)
	$(BIN)/python benchmarks/select_throughput.py

clean:
	rm -rf .rsft $(VENV)
