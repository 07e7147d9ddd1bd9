# hostnet: every target sets up .venv/ first (apt, pip and npm packages), then does its job.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-stamp
PYTEST_ARGS ?=

.PHONY: setup run test lint bench screenshots package reliability clean

setup: $(STAMP)

$(STAMP): pyproject.toml installer/setup-dev.sh installer/dev-packages.txt $(wildcard tests/package.json)
	installer/setup-dev.sh
	touch $(STAMP)

run: setup
	$(VENV)/bin/hostnet daemon

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

test: lint
	$(PY) -m pytest $(PYTEST_ARGS)

bench: setup
	$(PY) -m tests.bench

screenshots: setup
	$(PY) -m tests.ui.screenshots

package: setup
	$(PY) -m installer.build

reliability: setup
	$(PY) -m tests.reliability

clean:
	rm -rf $(VENV) build dist .mypy_cache .ruff_cache .pytest_cache
