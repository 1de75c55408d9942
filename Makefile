# Thin entry points; all logic lives in the driftloop package and .ci/run.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: run install test lint bench up down minimal

$(BIN)/driftloop: pyproject.toml constraints.txt
	$(PYTHON) -c 'import sys; sys.exit("driftloop needs Python 3.11 or 3.12, found " + sys.version.split()[0]) if sys.version_info[:2] not in ((3, 11), (3, 12)) else None'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt uv
	$(BIN)/uv pip install --python $(BIN)/python --quiet --compile-bytecode -c constraints.txt -e ".[dev]" \
	  || { echo "uv could not install the dependencies (above; it reads no pip.conf: UV_INDEX_URL sets a mirror): pip will"; \
	       $(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"; }
	touch $@

install: $(BIN)/driftloop      ## only set up .venv (what `run` and `test` do first)

run: $(BIN)/driftloop          ## set up, then the whole loop once (services stay up to explore)
	$(BIN)/driftloop demo --keep-running

# Three modules at once on two cores, each starting its own training and scoring processes: OpenMP's and OpenBLAS's
# threads (one per core in every process, spinning while they wait) would compete for the same cores. A
# histogram-gradient-boosting training run on a busy machine used 14.5 s of CPU with them, 11.6 s on one thread.
test: lint                     ## lint, then the whole test suite (unit + integration), three modules at a time
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} OPENBLAS_NUM_THREADS=$${OPENBLAS_NUM_THREADS:-1} \
	  $(BIN)/pytest -n 3 --dist loadfile --no-loadscope-reorder --durations=25 tests/unit tests/integration

# A minimal install (no extras: no Evidently) on pandas 3, in .venv-minimal, and the unit tests that need no
# extra (Evidently's agreement, LightGBM/XGBoost, Triton's client, the dev tools' own tests are left out).
minimal:
	test -x .venv-minimal/bin/python || $(PYTHON) -m venv .venv-minimal
	grep -v '^pandas\(-stubs\)\?==\|^evidently==' constraints.txt > .venv-minimal/constraints.txt
	.venv-minimal/bin/python -m pip install --quiet -c .venv-minimal/constraints.txt -e . 'pandas>=3' pytest pytest-xdist
	.venv-minimal/bin/python -c 'import importlib.util as u, pandas; assert u.find_spec("evidently") is None; print("pandas", pandas.__version__, "without evidently")'
	.venv-minimal/bin/pytest -n 2 -p no:cacheprovider tests/unit --ignore=tests/unit/test_drift_evidently.py \
	  --ignore=tests/unit/serving/test_protocols.py --ignore=tests/unit/test_k8s_manifests.py \
	  -k 'not lightgbm and not xgboost and not contracts_hold and not actionlint'

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
	$(BIN)/python bench/bench_score.py
	$(BIN)/python bench/bench_prediction_log.py
	$(BIN)/python bench/bench_feedback.py
	$(BIN)/python bench/bench_image.py
	$(BIN)/python bench/bench_rollout.py

up: $(BIN)/driftloop
	$(BIN)/driftloop up

down: $(BIN)/driftloop
	$(BIN)/driftloop down
