"""Reporting tasks: the records operators read, as Prefect artifacts and MLflow tags/artifacts."""

from __future__ import annotations

from collections.abc import Mapping

from prefect import task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from driftloop.io import tracking
from driftloop.io.registry import ModelRegistry
from tasks.policies import mlflow_task


@mlflow_task("record-decision")
def record_decision(tracking_uri: str, run_id: str, markdown: str, tags: Mapping[str, str], verdict: str) -> None:
    """The gate's decision as a Prefect markdown artifact and as MLflow run tags plus ``decision.md``."""
    create_markdown_artifact(key="promotion-decision", markdown=markdown, description=f"gate verdict: {verdict}")
    client = tracking.use_tracking_uri(tracking_uri)
    tracking.set_run_tags(client, run_id, tags)
    tracking.log_text(client, run_id, markdown, "decision.md")


@mlflow_task("update-decision")
def update_decision(
    tracking_uri: str, run_id: str, model_name: str, version: str, markdown: str, tags: Mapping[str, str], verdict: str
) -> None:
    """The gate decided again after registration (the champion moved, or got pinned): the record follows."""
    record_decision.fn(tracking_uri, run_id, markdown, tags, verdict)
    ModelRegistry(model_name, tracking_uri).set_version_tags(version, tags)


@task(name="record-metrics", cache_policy=NO_CACHE)
def record_metrics(rows: list[dict[str, str]]) -> None:
    create_table_artifact(key="model-metrics", table=rows, description="holdout metrics: candidate vs champion")


@task(name="link-mlflow", cache_policy=NO_CACHE)
def link_mlflow(run_url: str, version_url: str | None) -> None:
    """Link artifacts from the Prefect run to the MLflow run and model version."""
    create_link_artifact(key="mlflow-run", link=run_url, link_text="MLflow run")
    if version_url:
        create_link_artifact(key="mlflow-model-version", link=version_url, link_text="MLflow model version")
