# ModalMesh: `make run` starts the whole stack on this machine, `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# llama-cpp-python compiles llama.cpp once (cached by pip afterwards): use every core for it.
export CMAKE_BUILD_PARALLEL_LEVEL ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: run test test-fast bench lint format clean install install-test

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.installed-run: pyproject.toml | $(PY)
	$(PIP) install --quiet -e '.[cpu]'
	@touch $@

$(VENV)/.installed-test: pyproject.toml | $(PY)
	$(PIP) install --quiet -e '.[test]'
	@touch $@ $(VENV)/.installed-run

install: $(VENV)/.installed-run
install-test: $(VENV)/.installed-test

## run: start NATS and every service on this machine (tiny CPU model), print the URL
run: install
	$(PY) -m services.run

## test: install what the tests need, lint, then run unit, integration and end-to-end tests
test: install-test lint
	$(PY) -m pytest -q

test-fast: install-test
	$(PY) -m pytest -q tests/unit

## bench: control-plane overhead and streaming throughput -> .data/bench/overhead.json
bench: install-test
	$(PY) -m bench.overhead

lint: install-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

format: install-test
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf .data .pytest_cache .mypy_cache .ruff_cache
