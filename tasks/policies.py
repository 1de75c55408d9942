"""The one retry policy for tasks that talk to MLflow, as a typed task decorator."""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

from prefect import Task, task
from prefect.cache_policies import NO_CACHE

P = ParamSpec("P")
R = TypeVar("R")

# A tracking server or artifact store that blips (a restart, a dropped connection) gets two more tries, 3 s apart.
MLFLOW_RETRIES = 2
MLFLOW_RETRY_DELAY_SECONDS = 3


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
    )
