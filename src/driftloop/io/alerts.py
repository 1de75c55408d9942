"""Alerts: a Prefect automation that posts drift, drift-without-labels and rollback events to a webhook.

Created by `driftloop up` when DRIFTLOOP_ALERT_WEBHOOK_URL is set; `scripts/alert_receiver.py` is a runnable
receiver to try it. Re-running replaces the block and the automation (same names), so it is idempotent.
"""

from __future__ import annotations

import contextlib
from typing import cast

from driftloop.events import DRIFT_DETECTED, DRIFT_WITHOUT_LABELS, MODEL_ROLLED_BACK, ROLLOUT_ROLLED_BACK

AUTOMATION_NAME = "driftloop-alerts"
BLOCK_NAME = "driftloop-alert-webhook"
ALERT_EVENTS = (DRIFT_DETECTED, DRIFT_WITHOUT_LABELS, MODEL_ROLLED_BACK, ROLLOUT_ROLLED_BACK)

_SUBJECT = "driftloop: {{ event.event }} for {{ event.resource.name }}"
_BODY = (
    "{{ event.event }} at {{ event.occurred }} for {{ event.resource['prefect.resource.id'] }}\n"
    "{{ event.payload | tojson }}"
)


def install_alerts(webhook_url: str) -> str:
    """Create (or replace) the webhook block and the automation; returns the automation's id."""
    from prefect.automations import Automation
    from prefect.blocks.notifications import CustomWebhookNotificationBlock
    from prefect.events.actions import SendNotification
    from prefect.events.schemas.automations import EventTrigger, Posture

    block = CustomWebhookNotificationBlock(
        name=BLOCK_NAME, url=webhook_url, json_data={"subject": "{{subject}}", "body": "{{body}}"}
    )
    block_id = block.save(BLOCK_NAME, overwrite=True)
    # Prefect's read() and create() run sync or async by context (async_dispatch) and are typed as the coroutine
    # (read) or either (create); called outside an event loop, as here, they return the Automation itself.
    with contextlib.suppress(ValueError):  # Automation.read raises ValueError when there is none yet
        cast("Automation", Automation.read(name=AUTOMATION_NAME)).delete()
    automation = cast(
        "Automation",
        Automation(
            name=AUTOMATION_NAME,
            description="driftloop: notify on drift and on rollbacks",
            trigger=EventTrigger(
                expect=set(ALERT_EVENTS),
                match={"prefect.resource.id": "driftloop.model.*"},
                posture=Posture.Reactive,
                threshold=1,
            ),
            actions=[SendNotification(block_document_id=block_id, subject=_SUBJECT, body=_BODY)],
        ).create(),
    )
    return str(automation.id)
