# The README's two commands are `make demo` and `make test`; both set up .venv first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export PYTHONUNBUFFERED := 1

.PHONY: setup demo test test-slow test-all lint format benchmark clean

setup:
	$(PYTHON) tools/setup_env.py

demo: setup
	$(BIN)/vimpnet-ros demo --output demo_output

test: setup lint
	$(BIN)/python -m pytest

test-slow: setup
	$(BIN)/python -m pytest -m slow

test-all: setup lint
	$(BIN)/python -m pytest -m "slow or not slow"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python tools/check_layers.py

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

benchmark: setup
	$(BIN)/vimpnet-ros benchmark model --output benchmarks/model.json
	$(BIN)/vimpnet-ros benchmark engine --output benchmarks/engine.json

clean:
	rm -rf build install log .pytest_cache .ruff_cache
