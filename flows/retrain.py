"""retrain_model: dedupe/cooldown → reference + labelled recent data → train_model (must beat the champion)."""

from __future__ import annotations

from dataclasses import dataclass

from prefect import flow

from driftloop.settings import get_settings
from flows.train import TrainingOutcome, train_model
from tasks.retrain import build_snapshot, claim_retrain, record_retrain


@dataclass(frozen=True)
class RetrainOutcome:
    model_name: str
    from_version: str
    ran: bool
    reason: str
    training: TrainingOutcome | None


@flow(name="retrain-model")
def retrain_model(
    model_name: str | None = None,
    version: str | None = None,
    episode: str = "manual",
    reason: str = "manual retrain",
) -> RetrainOutcome:
    """Retrain the drifted champion on its reference data plus the labelled recent predictions.

    Triggered by ``driftloop.drift.detected`` (prefect.yaml). Runs at most once per drift episode and not within
    the cooldown after another retrain; each suppressed run leaves a ``retrain-decision`` artifact saying why.

    Args:
        model_name: Registered model; default: settings.
        version: The champion version the drift was found on; default: the current champion.
        episode: The drift episode key from the event (dedupe key).
        reason: Why the retrain was asked for (the drift verdict).
    """
    settings = get_settings()
    name = model_name or settings.model_name
    uri = settings.tracking_uri
    drifted = version or _current_champion(name, uri)
    decision = claim_retrain(name, uri, drifted, episode, settings.retrain_cooldown_seconds)
    if not decision.run:
        record_retrain(
            f"# Retrain skipped\n\nmodel `{name}` v{drifted}: {decision.reason}\n\nasked because: {reason}\n", "skipped"
        )
        return RetrainOutcome(name, drifted, False, decision.reason, None)

    snapshot, schema, labelled_rows, estimator = build_snapshot(name, uri, drifted, settings.predictions_url,
                                                     settings.home / "snapshots")  # fmt: skip
    training = train_model(
        data_path=str(snapshot),
        schema_path=str(schema),
        model_name=name,
        estimator=estimator,  # the champion's estimator, refitted on the grown snapshot
        # A retrained model must beat the champion, not merely tie it.
        tolerance=-settings.retrain_min_improvement,
    )
    verdict = f"v{training.version} promoted" if training.promoted else f"v{training.version} refused"
    record_retrain(
        f"# Retrain: {verdict}\n\nmodel `{name}`, drifted champion v{drifted}, episode `{episode}`\n\n"
        f"- asked because: {reason}\n- data: the reference snapshot plus {labelled_rows} labelled recent rows\n"
        f"- gate: {training.verdict}: {'; '.join(training.reasons)}\n- MLflow: {training.mlflow_version_url}\n",
        verdict,
    )
    return RetrainOutcome(name, drifted, True, decision.reason, training)


def _current_champion(model_name: str, tracking_uri: str) -> str:
    from driftloop.errors import RegistryError
    from driftloop.io.registry import ModelRegistry

    champion = ModelRegistry(model_name, tracking_uri).champion()
    if champion is None:
        raise RegistryError(f"model {model_name!r} has no champion to retrain")
    return str(champion.version)


if __name__ == "__main__":
    retrain_model()
