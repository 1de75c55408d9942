"""Reads of the Prefect server: did a retrain that claimed an episode end without saying how? Is there one to run?"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime


def flow_run_state(flow_run_id: str) -> str | None:
    """The state type of the flow run (``RUNNING``, ``COMPLETED``, ``CRASHED``, ...), or None if there is none."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    try:
        run_id = uuid.UUID(flow_run_id)
    except ValueError:
        return None
    with get_client(sync_client=True) as client:
        try:
            run = client.read_flow_run(run_id)
        except ObjectNotFound:
            return None
    return run.state.type.value if run.state is not None else None


RETRAIN_FLOW = "retrain-model"  # flows/retrain.py's @flow name
ANY_MODEL_RETRAIN = "retrain"  # a one-model stack's deployment (the compose stack's): its trigger takes any model


@dataclass(frozen=True)
class RetrainDeployment:
    name: str
    created: datetime | None  # as the server recorded it


def retrain_deployments(model_name: str) -> list[RetrainDeployment] | None:
    """The retrain deployments whose trigger takes ``model_name``'s drift events; None if the server did not say.

    ``driftloop up`` deploys one per model of the project (``retrain-NAME``, tagged ``model:NAME``); a stack that
    deploys prefect.yaml as it is has ``retrain``, which takes every model's.
    """
    import httpx
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    try:
        with get_client(sync_client=True) as client:
            found = client.read_deployments(flow_filter=FlowFilter(name=FlowFilterName(any_=[RETRAIN_FLOW])))
    except httpx.HTTPError:  # only a note depends on it: the check that asked must not fail for it
        return None
    return [
        RetrainDeployment(d.name, d.created)
        for d in found
        if d.name == ANY_MODEL_RETRAIN or f"model:{model_name}" in (d.tags or [])
    ]
