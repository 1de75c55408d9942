"""Import boundaries: the serving path stays slim; the library never needs Prefect."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("prefect", "mlflow", "sklearn", "skl2onnx", "pandas", "matplotlib", "scipy")


def loaded_after_import(module: str) -> list[str]:
    code = f"import sys, {module}; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    return eval(result.stdout)  # noqa: S307 (our own subprocess printed a list literal)


@pytest.mark.parametrize(
    "module",
    [
        "driftloop.serving.app",
        "driftloop.serving.server",
        "driftloop.serving.prediction_log",
        "driftloop.io.prediction_store",
        "driftloop.io.bundle",
        "driftloop.io.onnx_runtime",
        "driftloop.settings",
    ],
)
def test_serving_path_imports_no_training_or_orchestration_stack(module: str) -> None:
    assert loaded_after_import(module) == []


@pytest.mark.parametrize("module", ["driftloop.core.gates", "driftloop.io.registry", "driftloop.io.tracking"])
def test_the_library_does_not_import_prefect(module: str) -> None:
    assert "prefect" not in loaded_after_import(module)
