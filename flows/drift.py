"""check_drift: read the champion's recent predictions → test them against its reference → report → maybe alarm."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from prefect import flow

from driftloop.core.background import completed, in_background
from driftloop.core.check_record import build_record
from driftloop.core.drift import check_drift as test_drift
from driftloop.core.drift import check_target_drift, window_predictions
from driftloop.core.drift_rule import DriftRule, EpisodeTrigger, episode_reasons
from driftloop.core.label_check import check_labels, labelled_rows
from driftloop.core.performance_estimate import estimate_performance
from driftloop.core.segments import check_segments, drifted_segments
from driftloop.settings import get_settings
from tasks.drift import (
    REPORT_LEFT_OUT,
    EpisodePolicy,
    champion_task,
    check_window_in_chunks,
    handle_episode,
    keep_check,
    load_reference,
    publish_verdict,
    read_window,
    record_check,
    truth_baseline,
)
from tasks.registry import find_champion


@dataclass(frozen=True)
class DriftCheckOutcome:
    """What one drift check found and did."""

    model_name: str
    version: str | None
    verdict: str
    concept: str
    share: float
    drifted_columns: list[str]
    rows: int  # of this version's predictions in the window
    action: str
    episode: str | None
    note: str
    report_url: str | None
    prediction_drift: bool | None = None  # the model's output drifted (None: not tested); not in ``share``
    prediction_detail: str = ""  # its test's figures (``ColumnDrift.detail``)
    weighted_share: float | None = None  # the drifted features' importance weight (None: no weights)
    decided_by: str = ""  # the rule and what fired under it (``DriftVerdict.decided_by``)
    estimate: str = "not available"  # the performance estimated without labels: degraded, ok, not available
    estimate_detail: str = ""  # its figures, or why there are none
    target_drift: bool | None = None  # the labels that came back drifted from the training target (None: not tested)
    target_detail: str = ""
    label_check: str = ""  # the label check's figures (``LabelCheck.summary``)
    segments: tuple[str, ...] = ()  # each segment's figures in a line (``SegmentCheck.summary``); not judged
    report_file: str | None = None  # the Evidently HTML report as a local file, to open in a browser
    report_left_out: bool = False  # the check had something to report, and DRIFTLOOP_DRIFT_REPORT=false skipped it
    fired: tuple[str, ...] = ()  # which of the policy's episode triggers fired (features, estimate, labels)
    min_rows: int = 0  # the rows the features' check needs
    triggers: tuple[str, ...] = ()  # the policy's episode triggers


@flow(name="check-drift")
def check_drift(
    model_name: str | None = None,
    window_rows: int | None = None,
    min_rows: int | None = None,
    drift_share: float | None = None,
    drift_rule: DriftRule | None = None,
    opens_episode: tuple[EpisodeTrigger, ...] | None = None,
) -> DriftCheckOutcome:
    """Test the champion's last predictions for data drift (and, where labels arrived, concept drift).

    The model's own output is tested too (prediction drift) and reported, without counting in the verdict.

    Args:
        model_name: Registered model; default: settings.
        window_rows: How many recent predictions to read; default: settings (DRIFTLOOP_DRIFT_WINDOW_ROWS).
        min_rows: Below this many rows the verdict is "insufficient data"; default: settings.
        drift_share: Dataset drift when at least this share of columns drifted; default: settings.
        drift_rule: Which share decides: share, weighted (by importance) or either; default: settings.
        opens_episode: Which of features, estimate, labels open an episode; default: settings.
    """
    settings = get_settings()
    name = model_name or settings.model_name
    uri = settings.tracking_uri
    champion = find_champion(name, uri)
    if champion is None:
        note = f"model {name!r} has no champion yet: nothing to check"
        publish_verdict(f"# Drift check skipped\n\n{note}\n", "skipped", settings.mlflow_ui)
        return DriftCheckOutcome(name, None, "skipped", "skipped", 0.0, [], 0, "none", None, note, None)

    wanted = window_rows or settings.drift_window_rows
    profile = load_reference(uri, champion.tags["driftloop.reference_uri"])
    task = champion_task(name, uri, champion.version, champion.tags)
    share_needed = drift_share or settings.drift_share
    rows_needed = min_rows or settings.drift_min_rows
    rule = drift_rule or settings.drift_rule
    if wanted > settings.drift_chunk_rows:
        # The features' verdict on every row, in bounded memory; the other figures on a sample and the labels.
        big = check_window_in_chunks(settings.predictions_url, name, champion.version, wanted,
                                     settings.drift_chunk_rows, profile, share_needed, rows_needed, rule)  # fmt: skip
        features, window, labelled = completed(big.verdict), big.sample, big.labelled
        bounds = (big.first_ts, big.last_ts)
    else:
        window = read_window(settings.predictions_url, name, champion.version, wanted)
        # The features' tests (numpy sorts, off the GIL) run beside the figures below: a tenth off a 1M-row check.
        features = in_background(test_drift, profile, window, drift_share=share_needed, min_rows=rows_needed,
                                 predictions=window_predictions(profile, window), rule=rule)  # fmt: skip
        labelled = labelled_rows(window)
        bounds = (
            (window["ts"].min().to_pydatetime(), window["ts"].max().to_pydatetime()) if len(window) else (None, None)
        )
    segments = check_segments(
        profile,
        window,
        profile.segments,
        task,
        drift_share=share_needed,
        min_rows=rows_needed,
        label_min_rows=settings.label_min_rows,
    )
    baseline, baseline_rows = truth_baseline(champion.tags, task)
    labels = check_labels(
        task,
        labelled["label"].to_numpy(),  # a regressor's value as text: check_labels reads it as a number
        labelled["actual"].to_numpy(),
        baseline,
        settings.label_min_rows,
        settings.label_max_drop,
        baseline_rows,
    )
    target = check_target_drift(profile, task, labelled["actual"], settings.label_min_rows)
    estimate = estimate_performance(
        profile.calibration,
        task,
        window["probability"].to_numpy(),
        window["label"].to_numpy(),
        truth_baseline(champion.tags, task, "accuracy")[0],  # the rows its calibration was fitted on
        settings.label_max_drop,
        min_rows or settings.drift_min_rows,
    )
    verdict = features.result()
    # What the policy lets open an episode: the features moved (by the rule), the labels say the model got worse,
    # or its calibrated confidence does before any label came back.
    reasons = episode_reasons(
        opens_episode or settings.drift_opens_episode,
        features=verdict.status == "drift",
        estimate=estimate.status == "degraded",
        labels=labels.status == "degraded",
    )
    drifted = bool(reasons)
    report_left_out = drifted and not settings.drift_report
    recorded = record_check(
        uri,
        settings.mlflow_artifacts if settings.uses_local_mlflow else None,
        settings.mlflow_ui,
        name,
        champion.version,
        verdict,
        labels,
        estimate,
        profile,
        window,
        with_report=drifted and not report_left_out,  # only when there is something to look at (it is slow)
        reports_dir=settings.home / "reports",
        report_left_out=report_left_out,
    )
    report_url = recorded.run_url
    payload = {
        "model": name,
        "version": champion.version,
        "kind": {"features": "data", "labels": "concept", "estimate": "performance"}[reasons[0]] if reasons else "none",
        "opened_by": list(reasons),
        # The labels are a reason (the policy lets them open an episode) of the check that asks for the retrain:
        # the retrain then holds its candidate to the recent rows.
        "labels_degraded": "labels" in reasons,
        "share": round(verdict.share, 4),
        "weighted_share": None if verdict.weighted_share is None else round(verdict.weighted_share, 4),
        "rule": verdict.decided_by(),
        "drifted_columns": verdict.drifted_columns,
        "rows": verdict.rows,
        "window_start": None if bounds[0] is None else str(bounds[0]),
        "window_end": None if bounds[1] is None else str(bounds[1]),
        **({"accuracy": None if labels.accuracy is None else round(labels.accuracy, 4)} if task.is_classifier else {}),
        "label_metric": labels.metric,
        "label_value": None if labels.value is None else float(f"{labels.value:.6g}"),
        "prediction_drift": verdict.prediction_drift,
        "target_drift": None if target is None else target.drifted,
        "estimated_accuracy": None if estimate.accuracy is None else round(estimate.accuracy, 4),
        "drifted_segments": drifted_segments(segments),
        "report": report_url,
        "report_file": None if recorded.report_path is None else str(recorded.report_path),
        "reason": f"{verdict.summary()}; {labels.summary()}; {estimate.summary()}",
    }
    insufficient = verdict.status == "insufficient data" and labels.value is None
    policy = EpisodePolicy(
        settings.retrain_cooldown_seconds, settings.retrain_min_new_labels, settings.retrain_timeout_seconds
    )
    episode = handle_episode(name, uri, settings.predictions_url, champion, drifted, insufficient, payload, policy)
    keep_check(
        settings.predictions_url,
        build_record(
            datetime.now(UTC),
            name,
            champion.version,
            verdict,
            labels,
            estimate,
            target,
            episode.action,
            episode.episode,
            bounds[0],
            bounds[1],
            [segment.as_dict() for segment in segments],
        ),
    )
    by_segment = "".join(f"- {segment.summary()}\n" for segment in segments)
    publish_verdict(
        f"{verdict.markdown()}\n\n{labels.summary()}\n\n{estimate.summary()}\n\n"
        + (f"**Segments** (reported, not judged):\n\n{by_segment}\n" if by_segment else "")
        + f"**Action**: {episode.note}\n\n"
        + (f"**Report**: {REPORT_LEFT_OUT}\n\n" if report_left_out else "")
        + f"[MLflow run]({report_url})\n",
        _headline(verdict.status, labels.status, estimate.status),
        report_url,
    )
    return DriftCheckOutcome(
        model_name=name,
        version=champion.version,
        verdict=verdict.status,
        concept=labels.status,
        share=float(np.round(verdict.share, 4)),
        drifted_columns=verdict.drifted_columns,
        rows=verdict.rows,
        min_rows=verdict.min_rows,
        action=episode.action,
        episode=episode.episode,
        note=episode.note,
        report_url=report_url,
        prediction_drift=verdict.prediction_drift,
        prediction_detail="" if verdict.prediction is None else verdict.prediction.detail(),
        label_check=labels.summary(),
        weighted_share=None if verdict.weighted_share is None else float(np.round(verdict.weighted_share, 4)),
        decided_by=verdict.decided_by(),
        estimate=estimate.status,
        estimate_detail=estimate.detail(),
        target_drift=None if target is None else target.drifted,
        target_detail="" if target is None else target.detail(),
        segments=tuple(segment.summary() for segment in segments),
        report_file=None if recorded.report_path is None else str(recorded.report_path),
        report_left_out=report_left_out,
        fired=reasons,
        triggers=opens_episode or settings.drift_opens_episode,
    )


def _headline(features: str, labels: str, estimate: str) -> str:
    """The check's result in a few words: a labelled drop first, then the features' verdict, then the estimate."""
    if labels == "degraded":
        return "concept drift"
    if features == "drift":
        return features
    if estimate == "degraded":
        return "estimated degradation"
    return features


if __name__ == "__main__":
    check_drift()
