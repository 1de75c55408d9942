"""The MLflow tasks' retry policy: a blip is tried again, an error about the input is not (trial 52)."""

from __future__ import annotations

import pytest
from prefect.states import Completed, Failed

from driftloop.errors import ConfigError, DatasetError, DatasetValidationError, ExportError, RegistryError
from tasks.policies import MLFLOW_RETRIES, may_be_transient, mlflow_task


@mlflow_task("policy-probe")
def _probe() -> None:
    """A task under the policy, never run: its settings are what the tests read."""


@pytest.mark.parametrize(
    "error",
    [
        ExportError("cannot export"),
        ConfigError("bad setting"),
        DatasetError("unreadable"),
        DatasetValidationError("d", ["x"]),
    ],
)
def test_an_error_about_the_input_is_not_retried(error: Exception) -> None:
    assert may_be_transient(_probe, None, Failed(data=error)) is False  # type: ignore[arg-type]


@pytest.mark.parametrize("error", [OSError("connection reset"), TimeoutError(), RegistryError("store busy")])
def test_anything_else_is_retried(error: Exception) -> None:
    assert may_be_transient(_probe, None, Failed(data=error)) is True  # type: ignore[arg-type]


def test_the_mlflow_tasks_use_the_policy() -> None:
    assert _probe.retries == MLFLOW_RETRIES
    assert _probe.retry_condition_fn is may_be_transient
    assert may_be_transient(_probe, None, Completed()) is True  # type: ignore[arg-type]  # a state with no error
