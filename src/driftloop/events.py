"""Event names, resource ids and registry aliases: one spelling for emitters, triggers and readers."""

from __future__ import annotations

CHAMPION = "champion"

DRIFT_DETECTED = "driftloop.drift.detected"
# The model drifts and a retrain cannot help yet: no labelled rows it has not seen, and its data source is unchanged.
DRIFT_WITHOUT_LABELS = "driftloop.drift.without_labels"
MODEL_PROMOTED = "driftloop.model.promoted"
MODEL_ROLLED_BACK = "driftloop.model.rolled_back"
ROLLOUT_COMPLETED = "driftloop.rollout.completed"
ROLLOUT_ROLLED_BACK = "driftloop.rollout.rolled_back"


def model_resource(model_name: str) -> str:
    """The Prefect resource id events about a model carry."""
    return f"driftloop.model.{model_name}"
