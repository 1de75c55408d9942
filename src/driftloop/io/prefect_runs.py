"""Read the state of a Prefect flow run: did a retrain that claimed an episode end without saying how?"""

from __future__ import annotations

import uuid


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
