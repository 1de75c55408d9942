"""The one retry policy for tasks that talk to MLflow, as a typed task decorator."""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

from prefect import Task, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, TaskRun

from driftloop.errors import ConfigError, DatasetError, ExportError

P = ParamSpec("P")
R = TypeVar("R")

# A tracking server or artifact store that blips (a restart, a dropped connection) gets two more tries, 3 s apart.
MLFLOW_RETRIES = 2
MLFLOW_RETRY_DELAY_SECONDS = 3
# Errors about the input itself (a setting, the data, a model that cannot be exported): the same input gives the
# same error, so another try only delays it (trial 52: an export refused three times, 3 s apart).
NOT_TRANSIENT: tuple[type[Exception], ...] = (ConfigError, DatasetError, ExportError)


def may_be_transient(task: Task[..., object], task_run: TaskRun, state: State[object]) -> bool:
    """Prefect's ``retry_condition_fn``: retry unless the failure is one of ``NOT_TRANSIENT``."""
    return not isinstance(state.data, NOT_TRANSIENT)


def mlflow_task(name: str, *, timeout_seconds: float | None = None) -> Callable[[Callable[P, R]], Task[P, R]]:
    """``@task`` for a task that talks to MLflow: the MLflow retry policy, never cached.

    Never cached because what it reads or writes (runs, versions, aliases, tags) changes under it. Built with
    explicit keyword arguments, so Prefect's overloads keep the task typed as ``Task[P, R]`` and every flow → task
    call is checked.
    """
    return task(
        name=name,
        cache_policy=NO_CACHE,
        timeout_seconds=timeout_seconds,
        retries=MLFLOW_RETRIES,
        retry_delay_seconds=MLFLOW_RETRY_DELAY_SECONDS,
        retry_condition_fn=may_be_transient,
    )
