"""retrain_model: claim the attempt → what is new? → champion's recipe on its snapshot + new labels → train_model.

A retrain runs only when there is something new to learn from (labelled rows the champion has not seen, or a
changed data source); otherwise it records why it skipped, keeps the episode open and alerts. Whatever happens,
the episode learns the outcome: a retrain that fails is released, so the next drift check asks again.
"""

from __future__ import annotations

from dataclasses import dataclass

from prefect import flow
from prefect.runtime import flow_run

from driftloop.core.episodes import MANUAL, RetrainState
from driftloop.core.gates import RECENT
from driftloop.core.recipe import RetrainInput, SplitSpec
from driftloop.core.retrain import plan_retrain
from driftloop.errors import RegistryError
from driftloop.settings import get_settings
from flows.train import TrainingOutcome, train_model
from tasks.registry import find_champion
from tasks.retrain import (
    alert_without_labels,
    check_source,
    claim_retrain,
    collect_new_labels,
    fetch_base,
    read_recipe,
    record_retrain,
    record_retrain_on_version,
    settle_episode,
)


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
    episode: str = MANUAL,
    reason: str = "manual retrain",
    attempt: int = 1,
    truth_changed: bool = False,
) -> RetrainOutcome:
    """Retrain the drifted champion as it was configured, on its training snapshot plus the new labelled rows.

    Triggered by ``driftloop.drift.detected`` (prefect.yaml). Each attempt of an episode runs once, never within
    the cooldown after another retrain; every run leaves a ``retrain-decision`` artifact saying what it did.

    Args:
        model_name: Registered model; default: settings.
        version: The champion version the drift was found on; default: the current champion.
        episode: The drift episode key from the event; ``manual`` for a retrain started by hand.
        reason: Why the retrain was asked for (the drift verdict).
        attempt: The episode's attempt number from the event (a duplicate event carries the same one).
        truth_changed: The drift check that asked found the labels degraded, as a reason its policy counts (the
            event's ``labels_degraded``): the champion fell short on labelled live traffic, so the old rows' labels
            are out of date and the candidate is held to the recent rows alone (``GatePolicy.truth_changed``).
    """
    settings = get_settings()
    name = model_name or settings.model_name
    uri = settings.tracking_uri
    drifted = version or _current_champion(name, uri)
    claim = claim_retrain(name, uri, drifted, episode, attempt, settings.retrain_cooldown_seconds, str(flow_run.id))
    if not claim.run:
        record_retrain(f"# Retrain skipped\n\nmodel `{name}` v{drifted}: {claim.reason}\n\nasked because: {reason}\n",
                       "skipped")  # fmt: skip
        return RetrainOutcome(name, drifted, False, claim.reason, None)

    try:
        outcome = _retrain(name, uri, drifted, episode, reason, truth_changed)
    except BaseException:
        settle_episode(name, uri, drifted, episode, "failed", 0)  # released: the next drift check asks again
        raise
    return outcome


def _retrain(name: str, uri: str, drifted: str, episode: str, reason: str, truth_changed: bool) -> RetrainOutcome:
    settings = get_settings()
    work = settings.home / "snapshots" / f"{name}-v{drifted}-{flow_run.id}"
    champion = read_recipe(name, uri, drifted, SplitSpec(settings.holdout_fraction, settings.seed), work)
    recipe, schema = champion.recipe, champion.schema
    # After a changed truth, the rows served before the change carry the old one: they are left out.
    labels = collect_new_labels(settings.predictions_url, name, schema, recipe.labels_through, work / "recent.parquet",
                                truth_changed, settings.label_min_rows)  # fmt: skip
    source = check_source(recipe, schema, settings.sql_password)
    plan = plan_retrain(drifted, labels.rows, source.check)
    left_out = f" ({labels.unusable} labelled rows left out: their label is not a class)" if labels.unusable else ""
    if labels.change:
        left_out += f"; {labels.change}: the {labels.before_change:,} labelled rows served before it are left out"
    if not plan.run:
        settle_episode(name, uri, drifted, episode, "waiting_for_labels", labels.used_up)
        record_retrain_on_version(name, uri, drifted, f"skipped: {plan.reason}", _actor(), in_history=True)
        alert_without_labels(name, drifted, episode, plan.reason)
        record_retrain(
            f"# Retrain skipped: no new labelled data\n\nmodel `{name}` v{drifted}, episode `{episode}`\n\n"
            f"- asked because: {reason}\n- decision: {plan.reason}{left_out}\n- the episode stays open; "
            f"the drift check asks again once {settings.retrain_min_new_labels} new labelled rows have arrived\n",
            "skipped: no new labels",
        )
        return RetrainOutcome(name, drifted, False, plan.reason, None)

    base = _source_path(recipe.source) if plan.base == "source" else fetch_base(uri, recipe, schema, work)
    training = train_model(
        data_path=str(base),
        schema_path=str(champion.schema_path),
        model_name=name,
        estimator=recipe.estimator,
        params=dict(recipe.params) or None,
        floors=dict(recipe.gate.floor_values),
        tolerance=recipe.gate.tolerance,
        confidence=recipe.gate.confidence,
        min_segment_rows=recipe.gate.min_segment_rows,
        holdout_fraction=recipe.split.fraction,
        split_seed=recipe.split.seed,
        retrain=RetrainInput(
            drifted_version=drifted,
            recent_data_path=str(labels.path) if labels.path else None,
            improve_on=plan.improve_on,
            min_effect=settings.retrain_min_improvement,
            source=recipe.source,
            source_hash=source.current_hash or recipe.source_hash,
            labels_through=labels.latest or recipe.labels_through,
            # A changed source is judged on all its rows: there is no recent segment to hold the candidate to.
            truth_changed=truth_changed and plan.improve_on == RECENT,
        ),
    )
    state: RetrainState = "promoted" if training.promoted else "refused"
    settle_episode(name, uri, drifted, episode, state, labels.used_up)
    verdict = f"v{training.version} promoted" if training.promoted else f"v{training.version} refused"
    record_retrain_on_version(name, uri, drifted, f"{verdict}: {training.rule}", _actor())
    record_retrain(
        f"# Retrain: {verdict}\n\nmodel `{name}`, drifted champion v{drifted}, episode `{episode}`\n\n"
        f"- asked because: {reason}\n- data: {plan.reason}{left_out}\n"
        f"- estimator: {recipe.estimator} {dict(recipe.params) or ''}\n"
        f"- gate rule: {training.rule}\n- gate: {training.verdict}: {'; '.join(training.reasons)}\n"
        f"- MLflow: {training.mlflow_version_url}\n",
        verdict,
    )
    return RetrainOutcome(name, drifted, True, plan.reason, training)


def _source_path(source: str | None) -> str:
    if not source:
        raise RegistryError("the plan names the data source, but the version records none")
    return source


def _actor() -> str:
    return f"prefect flow run {flow_run.flow_name}/{flow_run.name} ({flow_run.id})"


def _current_champion(model_name: str, tracking_uri: str) -> str:
    champion = find_champion(model_name, tracking_uri)
    if champion is None:
        raise RegistryError(f"model {model_name!r} has no champion to retrain")
    return champion.version


if __name__ == "__main__":
    retrain_model()
