# hostnet: every target sets up .venv/ first, then does its job. `make run` installs what running
# needs (installer/setup-dev.sh run); the development targets also install the test tools (apt,
# pip and npm packages: installer/setup-dev.sh dev).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-stamp
COMPILE := $(PY) -m compileall -q -j 0
PYTEST_ARGS ?=

.PHONY: setup bytecode run test lint bench screenshots package reliability clean

setup: $(STAMP)

# Every hostnet process (CLI, daemon, agent, the QEMU guest's agent over its share) imports
# this tree; with PYTHONDONTWRITEBYTECODE set (as on these machines) each one compiled every
# module again, 0.6 s a process. compileall writes the caches once; it skips what is fresh.
bytecode: setup
	$(COMPILE) app proxy vm installer tests

$(STAMP): pyproject.toml installer/setup-dev.sh $(wildcard installer/*-packages.txt tests/package.json)
	installer/setup-dev.sh dev
	touch $(STAMP)

# The desktop app when there is a display, else the daemon in the foreground. The setup runs
# every time (it is quick when all is there): the packages follow the VmBackend setting.
run:
	@installer/setup-dev.sh run
	@$(COMPILE) app proxy vm
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

test: lint bytecode
	$(PY) -m pytest $(PYTEST_ARGS)

bench: bytecode
	$(PY) -m tests.bench

screenshots: setup
	$(PY) -m tests.ui.screenshots

package: setup
	$(PY) -m installer.build

reliability: bytecode
	$(PY) -m tests.reliability

clean:
	rm -rf $(VENV) build dist .mypy_cache .ruff_cache .pytest_cache
