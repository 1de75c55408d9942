"""A Prefect automation that marks a flow run Crashed when its heartbeats stop (a killed process, a lost host).

Every flow run of driftloop sends a heartbeat each ``FLOW_HEARTBEAT_SECONDS`` (``Settings.process_env``). A run
that stops sending them without reaching a final state would stay "Running" for ever, and a drift episode would
wait for a retrain that ended long ago. Prefect's server evaluates the trigger, also for runs whose heartbeats
stopped while it was down: it judges them once it is back.
"""

from __future__ import annotations

from datetime import timedelta
from typing import cast

from driftloop.settings import FLOW_HEARTBEAT_SECONDS

AUTOMATION_NAME = "driftloop-crash-silent-flow-runs"
MISSED_HEARTBEATS = 3


def ensure_crash_automation() -> bool:
    """Create the automation unless one of its name exists; True when it was created now."""
    from prefect.automations import Automation
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture

    # read() and create() run sync or async by context and are typed as either; called outside an event loop, as
    # here, they return the Automation itself (as in io/alerts.py).
    try:
        cast("Automation", Automation.read(name=AUTOMATION_NAME))
        return False
    except ValueError:  # Automation.read's "none of that name"
        pass
    silence = FLOW_HEARTBEAT_SECONDS * MISSED_HEARTBEATS
    # Proactive: fires when, within `silence` after a heartbeat, neither another heartbeat nor a final state came.
    automation = Automation(
        name=AUTOMATION_NAME,
        description=f"driftloop: a flow run silent for {silence} s (no heartbeat, no final state) is marked Crashed",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={
                "prefect.flow-run.heartbeat",
                "prefect.flow-run.Completed",
                "prefect.flow-run.Failed",
                "prefect.flow-run.Cancelled",
                "prefect.flow-run.Crashed",
            },
            match={"prefect.resource.id": "prefect.flow-run.*"},
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=silence),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message=f"no heartbeat for {silence} s: the process running it ended without a final state "
                "(killed, its host lost, or its Prefect server unreachable)",
            )
        ],
    )
    cast("Automation", automation.create())
    return True
