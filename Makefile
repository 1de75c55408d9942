# Thin entry points; all logic lives in the driftloop package and .ci/run.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: run install test lint bench up down

$(BIN)/driftloop: pyproject.toml constraints.txt
	$(PYTHON) -c 'import sys; sys.exit("driftloop needs Python 3.11 or 3.12, found " + sys.version.split()[0]) if sys.version_info[:2] not in ((3, 11), (3, 12)) else None'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $@

install: $(BIN)/driftloop      ## only set up .venv (what `run` and `test` do first)

run: $(BIN)/driftloop          ## set up, then the whole loop once (services stay up to explore)
	$(BIN)/driftloop demo --keep-running

test: lint                     ## lint, then the whole test suite (unit + integration), three modules at a time
	$(BIN)/pytest -n 3 --dist loadfile --no-loadscope-reorder --durations=25 tests/unit tests/integration

lint: $(BIN)/driftloop         ## ruff, the import contracts, mypy, actionlint
	$(BIN)/ruff check . && $(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-logo
	$(BIN)/mypy
	$(BIN)/actionlint -no-color .github/workflows/*.yml

bench: $(BIN)/driftloop
	$(BIN)/python bench/bench_train.py
	$(BIN)/python bench/bench_gate.py
	$(BIN)/python bench/bench_onnx.py
	$(BIN)/python bench/bench_serving.py
	$(BIN)/python bench/bench_many_models.py
	$(BIN)/python bench/bench_drift.py
	$(BIN)/python bench/bench_prediction_log.py
	$(BIN)/python bench/bench_feedback.py
	$(BIN)/python bench/bench_image.py
	$(BIN)/python bench/bench_rollout.py

up: $(BIN)/driftloop
	$(BIN)/driftloop up

down: $(BIN)/driftloop
	$(BIN)/driftloop down
