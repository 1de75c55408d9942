"""Import boundaries: the serving path stays slim; the library never needs Prefect.

Each group of modules is imported, one after the other, by one fresh interpreter, which notes after each import
the heavy packages it newly loaded. Nothing heavy may be loaded by any of them; imported in turn, a module that would
load one on its own still does, unless an earlier one of the group did it (and that one's test fails). So one
interpreter per group checks what one per module did, without paying for the shared imports again and again.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("prefect", "mlflow", "sklearn", "skl2onnx", "pandas", "matplotlib", "scipy")

SERVING_PATH = [
    "driftloop.settings",
    "driftloop.io.bundle",
    "driftloop.io.onnx_runtime",
    "driftloop.io.prediction_store",
    "driftloop.serving.prediction_log",
    "driftloop.serving.server",
    "driftloop.serving.app",
]
LIBRARY = ["driftloop.core.gates", "driftloop.io.registry", "driftloop.io.tracking"]

IMPORT_IN_TURN = """
import importlib, json, sys
heavy, modules, newly = sys.argv[1].split(","), sys.argv[2:], {}
for module in modules:
    before = {name for name in heavy if name in sys.modules}
    importlib.import_module(module)
    newly[module] = sorted(name for name in heavy if name in sys.modules and name not in before)
print(json.dumps(newly))
"""


def newly_loaded(modules: list[str]) -> dict[str, list[str]]:
    """For each module, imported in turn by one fresh interpreter: the ``HEAVY`` packages its import loaded."""
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_IN_TURN, ",".join(HEAVY), *modules],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    loaded: dict[str, list[str]] = json.loads(result.stdout)
    return loaded


@pytest.fixture(scope="module")
def serving_path() -> dict[str, list[str]]:
    return newly_loaded(SERVING_PATH)


@pytest.fixture(scope="module")
def library() -> dict[str, list[str]]:
    return newly_loaded(LIBRARY)


@pytest.mark.parametrize("module", SERVING_PATH)
def test_serving_path_imports_no_training_or_orchestration_stack(
    serving_path: dict[str, list[str]], module: str
) -> None:
    assert serving_path[module] == []


@pytest.mark.parametrize("module", LIBRARY)
def test_the_library_does_not_import_prefect(library: dict[str, list[str]], module: str) -> None:
    assert "prefect" not in library[module]


def test_the_check_sees_what_an_import_loads(library: dict[str, list[str]]) -> None:
    # The check can fail: the registry module is MLflow's client, and the child saw it load MLflow.
    assert "mlflow" in library["driftloop.io.registry"]
