# Two commands: `make experiment` (quick-start results table) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
WORKDIR ?= runs/quickstart
# pytest workers; CI has 2 cores.
JOBS ?= 2

.PHONY: experiment test install install-test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: setup.py | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: setup.py $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

experiment: install
	$(BIN)/python -m experiments.baselines --config=configs/baselines.py \
	  --workdir=$(WORKDIR)

test: install-test
	$(BIN)/python -m pytest -q -n $(JOBS) tests

lint: install-test
	$(BIN)/ruff check jaxrec configs experiments tests tools

bench: install
	$(BIN)/python -m tools.bench

clean:
	rm -rf $(VENV) runs
