# hostnet: every target sets up .venv/ first, then does its job. `make run` installs what running
# needs (installer/setup-dev.sh run); the development targets also install the test tools (apt,
# pip and npm packages: installer/setup-dev.sh dev).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-stamp
PYTEST_ARGS ?=

.PHONY: setup run test lint bench screenshots package reliability clean

setup: $(STAMP)

$(STAMP): pyproject.toml installer/setup-dev.sh $(wildcard installer/*-packages.txt tests/package.json)
	installer/setup-dev.sh dev
	touch $(STAMP)

# The desktop app when there is a display, else the daemon in the foreground. The setup runs
# every time (it is quick when all is there): the packages follow the VmBackend setting.
run:
	@installer/setup-dev.sh run
	@if [ -n "$$DISPLAY$$WAYLAND_DISPLAY" ]; then \
		echo "make run: a display is here: opening the desktop app (it starts the daemon)"; \
		exec $(VENV)/bin/hostnet; \
	else \
		echo "make run: no display (DISPLAY, WAYLAND_DISPLAY unset): the daemon in the foreground"; \
		exec $(VENV)/bin/hostnet daemon; \
	fi

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
