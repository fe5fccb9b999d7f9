# Two commands on a fresh machine: `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test bench clean-venv

# The stamp is remade whenever pyproject.toml changes, so a dependency added there reaches every checkout.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[dev,launchers,export,models,search,trackers]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/progprune train +strategy=weight

# One pytest worker per core, each test file on one worker (a file's finished runs are made once): 375 s instead of
# 770 s on 2 cores. tests/conftest.py gives each worker, and the runs it starts, its share of the threads.
test: $(STAMP)
	$(BIN)/pytest -q -n auto --dist loadfile

bench: $(STAMP)
	$(BIN)/python bench/run_default.py

clean-venv:
	rm -rf $(VENV)
