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

test: $(STAMP)
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python bench/run_default.py

clean-venv:
	rm -rf $(VENV)
