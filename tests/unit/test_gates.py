import json
import math

import numpy as np
import pytest

from driftloop.core import lineage
from driftloop.core.gates import (
    ALL,
    CHAMPION_DATA,
    RECENT,
    REFERENCE,
    GatePolicy,
    PromotionDecision,
    SegmentComparison,
    compare_segments,
    decide_promotion,
)
from driftloop.core.significance import MetricDifference

POLICY = GatePolicy()  # roc_auc primary, floors roc_auc/accuracy ≥ 0.70, tolerance 0.005
CHAMPION = {"roc_auc": 0.80, "accuracy": 0.78, "log_loss": 0.45}


def _decide(
    candidate: dict[str, float],
    champion: dict[str, float] | None = CHAMPION,
    policy: GatePolicy = POLICY,
    parity: bool = True,
) -> PromotionDecision:
    version = "3" if champion is not None else None
    return decide_promotion(candidate, champion, version, parity, "max |Δp| 2e-7 over 200 rows", policy)


@pytest.mark.parametrize(
    ("case", "candidate", "champion", "policy", "verdict"),
    [
        ("better", {"roc_auc": 0.82, "accuracy": 0.79}, CHAMPION, POLICY, "promote"),
        ("worse", {"roc_auc": 0.75, "accuracy": 0.79}, CHAMPION, POLICY, "refuse"),
        ("tie", {"roc_auc": 0.80, "accuracy": 0.79}, CHAMPION, POLICY, "promote"),
        (
            "tie, zero tolerance",
            {"roc_auc": 0.80, "accuracy": 0.79},
            CHAMPION,
            GatePolicy(tolerance=0),
            "promote",
        ),
        ("within tolerance", {"roc_auc": 0.797, "accuracy": 0.79}, CHAMPION, POLICY, "promote"),
        ("exactly at tolerance", {"roc_auc": 0.795, "accuracy": 0.79}, CHAMPION, POLICY, "promote"),
        ("just outside tolerance", {"roc_auc": 0.7949, "accuracy": 0.79}, CHAMPION, POLICY, "refuse"),
        (
            "negative tolerance, small win",
            {"roc_auc": 0.805, "accuracy": 0.79},
            CHAMPION,
            GatePolicy(tolerance=-0.01),
            "refuse",
        ),
        (
            "negative tolerance, enough win",
            {"roc_auc": 0.81, "accuracy": 0.79},
            CHAMPION,
            GatePolicy(tolerance=-0.01),
            "promote",
        ),
        ("no champion", {"roc_auc": 0.71, "accuracy": 0.70}, None, POLICY, "promote"),
        ("no champion, floor missed", {"roc_auc": 0.69, "accuracy": 0.80}, None, POLICY, "refuse"),
        ("roc_auc floor missed", {"roc_auc": 0.697, "accuracy": 0.80}, {"roc_auc": 0.70}, POLICY, "refuse"),
        (  # an ordinary run's floors are absolute
            "roc_auc floor missed, champion further",
            {"roc_auc": 0.69, "accuracy": 0.80},
            {"roc_auc": 0.60},
            POLICY,
            "refuse",
        ),
        ("accuracy floor missed", {"roc_auc": 0.90, "accuracy": 0.69}, CHAMPION, POLICY, "refuse"),
        (
            "log_loss ceiling met",
            {"roc_auc": 0.81, "accuracy": 0.79, "log_loss": 0.40},
            CHAMPION,
            GatePolicy(floors={"log_loss": 0.5}),
            "promote",
        ),
        (
            "log_loss ceiling exceeded",
            {"roc_auc": 0.81, "accuracy": 0.79, "log_loss": 0.51},
            CHAMPION,
            GatePolicy(floors={"log_loss": 0.5}),
            "refuse",
        ),
        (
            "log_loss primary, lower better",
            {"log_loss": 0.40},
            CHAMPION,
            GatePolicy(primary_metric="log_loss", floors={}),
            "promote",
        ),
        (
            "log_loss primary, higher worse",
            {"log_loss": 0.46},
            CHAMPION,
            GatePolicy(primary_metric="log_loss", floors={}),
            "refuse",
        ),
        (
            "log_loss primary, within tolerance",
            {"log_loss": 0.454},
            CHAMPION,
            GatePolicy(primary_metric="log_loss", floors={}),
            "promote",
        ),
        ("candidate primary is NaN", {"roc_auc": math.nan, "accuracy": 0.79}, CHAMPION, POLICY, "refuse"),
        ("champion lacks primary", {"roc_auc": 0.9, "accuracy": 0.9}, {"accuracy": 0.7}, POLICY, "refuse"),
    ],
)
def test_verdicts(
    case: str,
    candidate: dict[str, float],
    champion: dict[str, float] | None,
    policy: GatePolicy,
    verdict: str,
) -> None:
    decision = _decide(candidate, champion, policy)
    assert decision.verdict == verdict, (case, decision.reasons)
    assert decision.promote is (verdict == "promote")
    assert decision.reasons
    assert all(reason.strip() for reason in decision.reasons)


def test_parity_failure_is_never_promotable_even_with_better_metrics() -> None:
    decision = _decide({"roc_auc": 0.99, "accuracy": 0.99}, parity=False)
    assert decision.verdict == "refuse"
    assert decision.reasons == (
        "ONNX parity check failed (max |Δp| 2e-7 over 200 rows): a model whose ONNX export disagrees with the "
        "trained model is never promoted",
    )


def test_every_failed_check_is_listed() -> None:
    decision = _decide({"roc_auc": 0.60, "accuracy": 0.65}, parity=False)
    assert decision.verdict == "refuse"
    assert len(decision.reasons) == 4
    assert "parity" in decision.reasons[0]
    assert "roc_auc 0.6000 is below the floor of 0.7000" in decision.reasons
    assert "accuracy 0.6500 is below the floor of 0.7000" in decision.reasons
    assert "allows at most 0.005 worse" in decision.reasons[3]
    assert "champion v3 0.8000" in decision.reasons[3]


def test_refusal_reasons_name_the_numbers() -> None:
    worse = _decide({"roc_auc": 0.79, "accuracy": 0.79})
    assert worse.reasons == ("roc_auc 0.7900 vs champion v3 0.8000 (-0.0100); the policy allows at most 0.005 worse",)
    stricter = _decide({"roc_auc": 0.805, "accuracy": 0.79}, policy=GatePolicy(tolerance=-0.01))
    assert "requires beating the champion by at least 0.01" in stricter.reasons[0]
    ceiling = _decide(
        {"roc_auc": 0.81, "accuracy": 0.79, "log_loss": 0.51}, policy=GatePolicy(floors={"log_loss": 0.5})
    )
    assert ceiling.reasons == ("log_loss 0.5100 is above the ceiling of 0.5000",)


def test_missing_floor_metric_is_reported_once() -> None:
    decision = _decide({"accuracy": 0.79})
    assert decision.verdict == "refuse"
    assert decision.reasons == ("candidate has no roc_auc metric, so its floor cannot be checked",)


def test_promote_reasons_explain_the_comparison() -> None:
    decision = _decide({"roc_auc": 0.797, "accuracy": 0.79})
    assert decision.reasons[0] == "roc_auc 0.7970 is within the tolerance of 0.005 of champion v3 0.8000 (-0.0030)"
    better = _decide({"roc_auc": 0.85, "accuracy": 0.79})
    assert better.reasons[0].startswith("roc_auc 0.8500 is better than champion v3 0.8000 (+0.0500)")
    first = _decide({"roc_auc": 0.75, "accuracy": 0.75}, champion=None)
    assert first.reasons == ("no champion yet; the candidate meets every floor and passed ONNX parity",)


def test_deltas_are_candidate_minus_champion_for_shared_metrics() -> None:
    decision = _decide({"roc_auc": 0.82, "accuracy": 0.75, "f1": 0.6})
    assert decision.deltas == pytest.approx({"roc_auc": 0.02, "accuracy": -0.03})
    assert _decide({"roc_auc": 0.8, "accuracy": 0.8}, champion=None).deltas == {}
    assert decision.champion_version == "3"
    assert decision.champion == CHAMPION


def test_markdown_has_verdict_first_then_table_reasons_policy() -> None:
    decision = _decide({"roc_auc": 0.79, "accuracy": 0.79, "log_loss": 0.47})
    text = decision.markdown()
    lines = text.splitlines()
    assert lines[0] == "# Gate verdict: **REFUSE**"
    assert "| **roc_auc ↑** (primary) | 0.7900 | 0.8000 | -0.0100 |" in lines
    assert "| accuracy ↑ | 0.7900 | 0.7800 | +0.0100 |" in lines
    assert "| log_loss ↓ | 0.4700 | 0.4500 | +0.0200 |" in lines
    assert text.index("| metric |") < text.index("## Reasons") < text.index("## Policy")
    assert "- roc_auc 0.7900 vs champion v3 0.8000 (-0.0100); the policy allows at most 0.005 worse" in lines
    assert "- floors: roc_auc ≥ 0.7, accuracy ≥ 0.7" in lines
    assert "- ONNX parity (always required): passed (max |Δp| 2e-7 over 200 rows)" in lines


def test_markdown_without_champion_uses_dashes() -> None:
    text = _decide({"roc_auc": 0.75, "accuracy": 0.72}, champion=None).markdown()
    assert text.startswith("# Gate verdict: **PROMOTE**")
    assert "| **roc_auc ↑** (primary) | 0.7500 | — | — |" in text
    assert "No champion yet" in text


def test_tags_use_lineage_names() -> None:
    decision = _decide({"roc_auc": 0.60, "accuracy": 0.65})
    tags = decision.tags()
    assert tags[lineage.GATE] == "refuse"
    assert tags[lineage.GATE_REASON] == "; ".join(decision.reasons)
    assert _decide({"roc_auc": 0.9, "accuracy": 0.9}).tags()[lineage.GATE] == "promote"


@pytest.mark.parametrize(
    "kwargs",
    [{"primary_metric": "auc"}, {"floors": {"roc_auc": 0.7, "precsion": 0.5}}],
)
def test_policy_rejects_unknown_metric_names(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="valid metric names: roc_auc, f1, accuracy, log_loss, precision, recall"):
        GatePolicy(**kwargs)  # type: ignore[arg-type]


def test_policy_rejects_non_finite_floors() -> None:
    with pytest.raises(ValueError, match="finite"):
        GatePolicy(floors={"roc_auc": math.inf})


@pytest.mark.parametrize("tolerance", [math.nan, math.inf, -1.0, 1.0, -3.0])
def test_policy_rejects_a_tolerance_no_candidate_could_meet_or_miss(tolerance: float) -> None:
    # A difference of ROC AUC (or R²) of 1 or more: -1 refuses every candidate, 1 admits any.
    with pytest.raises(ValueError, match="tolerance must lie between -1 and 1 \\(a difference of roc_auc"):
        GatePolicy(tolerance=tolerance)


@pytest.mark.parametrize("tolerance", [-0.99, -0.01, 0.0, 0.005, 0.5])
def test_policy_takes_a_tolerance_within_the_metrics_range(tolerance: float) -> None:
    assert GatePolicy(tolerance=tolerance).tolerance == tolerance


def test_policy_keeps_its_own_copy_of_floors() -> None:
    floors = {"roc_auc": 0.7}
    policy = GatePolicy(floors=floors)
    floors["roc_auc"] = 0.99
    assert policy.floors == {"roc_auc": 0.7}
    assert GatePolicy().floors == {"roc_auc": 0.70, "accuracy": 0.70}


# --- segments: the paired comparison against the champion ------------------------------------------------------


def _difference(improvement: float, low: float, high: float, rows: int = 400) -> MetricDifference:
    return MetricDifference("roc_auc", rows, rows, 0.8 + improvement, 0.8, improvement, low, high, 0.95, 2000)


def _segments(**by_name: MetricDifference | None) -> tuple[SegmentComparison, ...]:
    return tuple(
        SegmentComparison(name, 400 if d is not None else 12, d, "" if d is not None else "too few rows (12)")
        for name, d in by_name.items()
    )


RETRAIN = GatePolicy(improve_on=RECENT)
GOOD = {"roc_auc": 0.82, "accuracy": 0.79}


def _segment_decide(segments: tuple[SegmentComparison, ...], policy: GatePolicy = RETRAIN, pinned: str | None = None):  # type: ignore[no-untyped-def]
    return decide_promotion(GOOD, CHAMPION, "3", True, "ok", policy, segments=segments, pinned_by=pinned)


def test_a_retrain_significantly_better_where_it_was_meant_to_help_is_promoted() -> None:
    decision = _segment_decide(
        _segments(
            reference=_difference(-0.002, -0.01, 0.006),
            recent=_difference(0.06, 0.02, 0.10),
            all=_difference(0.004, -0.003, 0.011),
        )
    )
    assert decision.verdict == "promote"
    assert decision.rule.startswith("retrain: significantly better on recent")
    assert any(reason.startswith("significantly better on recent") for reason in decision.reasons)
    assert any("not significantly worse on reference" in reason for reason in decision.reasons)


def test_a_retrain_that_is_not_significantly_better_is_refused_even_when_ahead() -> None:
    decision = _segment_decide(
        _segments(reference=_difference(0.003, -0.004, 0.01), recent=_difference(0.004, -0.03, 0.04))
    )
    assert decision.verdict == "refuse"
    assert any("no significant improvement on recent" in reason for reason in decision.reasons)


def test_min_effect_raises_the_bar() -> None:
    segments = _segments(recent=_difference(0.03, 0.01, 0.05))
    assert _segment_decide(segments).verdict == "promote"
    assert _segment_decide(segments, GatePolicy(improve_on=RECENT, min_effect=0.02)).verdict == "refuse"


def test_a_retrain_with_too_few_labelled_rows_is_refused_and_says_so() -> None:
    decision = _segment_decide(_segments(reference=_difference(0.0, -0.01, 0.01), recent=None))
    assert decision.verdict == "refuse"
    assert any("cannot tell whether the retrain helps on recent: too few rows" in r for r in decision.reasons)


def test_a_significant_regression_anywhere_refuses() -> None:
    decision = _segment_decide(
        _segments(reference=_difference(-0.02, -0.03, -0.008), recent=_difference(0.08, 0.04, 0.12))
    )
    assert decision.verdict == "refuse"
    assert any(reason.startswith("significantly worse than champion v3 on reference") for reason in decision.reasons)


def test_an_ordinary_run_within_tolerance_is_still_refused_when_significantly_worse() -> None:
    decision = _segment_decide(_segments(all=_difference(-0.004, -0.007, -0.001)), POLICY)
    assert decision.verdict == "refuse"
    assert _segment_decide(_segments(all=_difference(-0.004, -0.012, 0.004)), POLICY).verdict == "promote"


def test_a_retrain_that_fixes_a_shift_may_give_up_less_than_its_tolerance_on_the_old_rows() -> None:
    """A big holdout calls 0.0006 "significantly worse"; a retrain that fixes a shift must still pass that."""
    fixes = _difference(0.23, 0.20, 0.26)
    slightly = _segment_decide(_segments(reference=_difference(-0.0006, -0.0011, -0.0002), recent=fixes))
    assert slightly.verdict == "promote", slightly.reasons
    assert "by more than 0.005" in slightly.rule
    clearly = _segment_decide(_segments(reference=_difference(-0.009, -0.012, -0.006), recent=fixes))
    assert clearly.verdict == "refuse"
    assert any("on reference" in r and "(beyond the tolerance of 0.005)" in r for r in clearly.reasons), clearly.reasons
    strict = GatePolicy(improve_on=RECENT, tolerance=0.0)
    assert _segment_decide(
        _segments(reference=_difference(-0.0006, -0.0011, -0.0002), recent=fixes), strict
    ).verdict == ("refuse")


def test_an_ordinary_run_on_other_data_may_give_up_less_than_its_tolerance_on_rows_only_the_champion_had() -> None:
    """Rows the candidate was not given (another file than the champion's): worse by more than the tolerance refuses."""
    fine_here = _difference(0.001, -0.004, 0.006)
    slightly = _segment_decide(
        tuple(_segments(all=fine_here)) + (SegmentComparison(CHAMPION_DATA, 400, _difference(-0.003, -0.004, -0.001)),),
        POLICY,
    )
    assert slightly.verdict == "promote", slightly.reasons
    assert POLICY.margin_on(CHAMPION_DATA) == 0.005
    assert POLICY.margin_on("all") == 0.0
    clearly = _segment_decide(
        tuple(_segments(all=fine_here)) + (SegmentComparison(CHAMPION_DATA, 400, _difference(-0.3, -0.37, -0.28)),),
        POLICY,
    )
    assert clearly.verdict == "refuse"
    assert any(
        r.startswith("significantly worse than champion v3 on rows only the champion had (400 rows)")
        and "(beyond the tolerance of 0.005)" in r
        for r in clearly.reasons
    ), clearly.reasons
    assert GatePolicy(tolerance=-0.01).margin_on(CHAMPION_DATA) == 0.0  # a negative tolerance gives no margin


def test_a_pinned_champion_refuses_automatic_promotion() -> None:
    segments = _segments(recent=_difference(0.06, 0.02, 0.10))
    decision = _segment_decide(segments, pinned="alice@host at v3 (release freeze)")
    assert decision.verdict == "refuse"
    assert any(r.startswith("champion pinned by alice@host at v3 (release freeze)") for r in decision.reasons)


def test_the_record_shows_each_segment_and_the_rule() -> None:
    decision = _segment_decide(
        _segments(reference=_difference(-0.002, -0.01, 0.006), recent=_difference(0.06, 0.02, 0.10), all=None)
    )
    markdown = decision.markdown()
    assert "| reference | 400 | 0.7980 | 0.8000 | -0.0020 | 95% [-0.0100, +0.0060] | no significant difference |" in (
        markdown
    )
    assert "| recent | 400 | 0.8600 | 0.8000 | +0.0600 | 95% [+0.0200, +0.1000] | significantly better |" in markdown
    assert "| all | 12 | — | — | — | — | not tested: too few rows (12) |" in markdown
    assert f"**Rule**: {decision.rule}" in markdown
    tags = decision.tags()
    assert tags[lineage.GATE_RULE] == decision.rule
    records = json.loads(tags[lineage.GATE_SEGMENTS])
    assert [r["segment"] for r in records] == ["reference", "recent", "all"]
    assert records[1]["low"] == 0.02
    assert records[2] == {"segment": "all", "rows": 12, "tested": False}


def test_without_a_champion_segments_are_not_recorded() -> None:
    decision = decide_promotion(GOOD, None, None, True, "ok", RETRAIN, segments=_segments(recent=None))
    assert decision.verdict == "promote"
    assert decision.rule == "first version: the floors and ONNX parity"
    assert lineage.GATE_SEGMENTS not in decision.tags()


def test_compare_segments_skips_small_or_one_class_segments() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 600)
    candidate = np.clip(y * 0.6 + rng.normal(0.2, 0.2, y.size), 0, 1)
    champion = np.clip(y * 0.3 + rng.normal(0.35, 0.2, y.size), 0, 1)
    small = np.zeros(y.size, dtype=bool)
    small[:30] = True
    one_class = y == 1
    comparisons = compare_segments(
        y, candidate, champion, {"all": np.ones(y.size, bool), "small": small, "ones": one_class},
        GatePolicy(resamples=300), seed=1,
    )  # fmt: skip
    assert [c.segment for c in comparisons] == ["all", "small", "ones"]
    assert comparisons[0].difference is not None
    assert comparisons[0].difference.significantly_better
    assert comparisons[1].difference is None
    assert "30 (need 50" in comparisons[1].note
    assert comparisons[2].difference is None
    assert "the smaller class has 0" in comparisons[2].note


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"min_effect": -0.1}, "min_effect"),
        ({"confidence": 1.0}, "confidence"),
        ({"min_segment_rows": 3}, "min_segment_rows"),
        ({"resamples": 5}, "resamples"),
    ],
)
def test_policy_rejects_bad_significance_settings(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        GatePolicy(**kwargs)  # type: ignore[arg-type]


def test_columns_the_schema_does_not_name_are_listed_in_the_record() -> None:
    decision = _decide({"roc_auc": 0.82, "accuracy": 0.79}).with_ignored_columns(["email", "signup_note"])
    assert "- Columns not in the schema, ignored: `email`, `signup_note`" in decision.markdown()
    assert json.loads(decision.tags()[lineage.IGNORED_COLUMNS]) == ["email", "signup_note"]
    clean = _decide({"roc_auc": 0.82, "accuracy": 0.79})
    assert "- Every column is in the schema." in clean.markdown()
    assert lineage.IGNORED_COLUMNS not in clean.tags()


def test_after_the_truth_changed_only_the_recent_rows_hold_a_retrain() -> None:
    policy = GatePolicy(improve_on=RECENT, truth_changed=True)
    assert policy.margin_on(RECENT) == policy.worse_margin == 0.005
    assert policy.margin_on(REFERENCE) == math.inf
    assert policy.margin_on(ALL) == math.inf
    assert "reference and all are reported, not held to" in policy.describe()[-1]
    assert "truth_changed" not in policy.as_dict()  # an episode's, not the recipe a later retrain applies
    usual = GatePolicy(improve_on=RECENT)
    assert usual.margin_on(REFERENCE) == usual.margin_on(ALL) == 0.005


@pytest.mark.parametrize("improve_on", [None, ALL])
def test_truth_changed_is_only_for_a_retrain_on_recent_rows(improve_on: str | None) -> None:
    with pytest.raises(ValueError, match="truth_changed is a retrain's on recent labelled rows"):
        GatePolicy(improve_on=improve_on, truth_changed=True)


def test_after_the_truth_changed_the_floors_judge_the_recent_rows() -> None:
    policy = GatePolicy(improve_on=RECENT, truth_changed=True)
    assert policy.floors_on == RECENT
    assert GatePolicy(improve_on=RECENT).floors_on is None
    whole = {"roc_auc": 0.69, "accuracy": 0.67}  # dragged down by the old rows' stale labels
    learnt = _segments(reference=_difference(-0.05, -0.07, -0.03), recent=_difference(0.3, 0.27, 0.33))

    def decide(on_recent: dict[str, float] | None, gate: GatePolicy = policy) -> PromotionDecision:
        return decide_promotion(whole, CHAMPION, "3", True, "ok", gate, segments=learnt, floor_metrics=on_recent)

    good = decide({"roc_auc": 0.85, "accuracy": 0.81})
    assert good.verdict == "promote", good.reasons
    assert good.reasons[-1] == (
        "the candidate meets every floor on recent (roc_auc 0.8500, accuracy 0.8100) and passed ONNX parity"
    )
    bad = decide({"roc_auc": 0.6, "accuracy": 0.81})
    assert bad.reasons == ("roc_auc 0.6000 on recent is below the floor of 0.7000",)
    none = decide({})
    assert "candidate on recent has no roc_auc metric, so its floor cannot be checked" in none.reasons
    usual = decide(None, GatePolicy(improve_on=RECENT))  # held to the old rows: their floors and their segment
    assert "roc_auc 0.6900 is below the floor of 0.7000" in usual.reasons
    with pytest.raises(ValueError, match="floor_metrics are the candidate's on recent"):
        decide(None)
    with pytest.raises(ValueError, match="floor_metrics are the candidate's on no segment"):
        decide({"roc_auc": 0.9}, GatePolicy(improve_on=RECENT))


def test_an_ordinary_run_s_floors_are_absolute_whatever_the_champion() -> None:
    """A user who raises a floor above the champion means it: a candidate better than the champion is still refused."""
    below = {"roc_auc": 0.62, "accuracy": 0.74}
    loose = GatePolicy(tolerance=0.05)
    better = _decide({"roc_auc": 0.66, "accuracy": 0.75}, below, loose)
    assert better.reasons == ("roc_auc 0.6600 is below the floor of 0.7000",)
    assert _decide({"roc_auc": 0.66, "accuracy": 0.75}, None).reasons == (
        "roc_auc 0.6600 is below the floor of 0.7000",
    )
    assert GatePolicy().describe()[2] == "floors: roc_auc ≥ 0.7, accuracy ≥ 0.7"


def _after_the_truth_changed(
    on_recent: dict[str, float], champion_on_recent: dict[str, float] | None, floors: dict[str, float] | None = None
) -> PromotionDecision:
    policy = GatePolicy(improve_on=RECENT, truth_changed=True, floors=floors)
    learnt = _segments(reference=_difference(-0.05, -0.07, -0.03), recent=_difference(0.2, 0.15, 0.25))
    return decide_promotion(CHAMPION, CHAMPION, "3", True, "ok", policy, segments=learnt, floor_metrics=on_recent,
                            champion_floor_metrics=champion_on_recent)  # fmt: skip


def test_a_ceiling_the_champion_misses_too_refuses_only_a_candidate_worse_than_it() -> None:
    ceiling = {"log_loss": 0.5}
    better = _after_the_truth_changed({"log_loss": 0.55}, {"log_loss": 0.60}, ceiling)
    assert better.verdict == "promote", better.reasons
    assert better.reasons[-2].startswith("log_loss 0.5500 on recent is above the ceiling of 0.5000, and champion v3's")
    assert better.reasons[-1] == "the candidate passed ONNX parity"
    worse = _after_the_truth_changed({"log_loss": 0.62}, {"log_loss": 0.60}, ceiling)
    assert worse.reasons == ("log_loss 0.6200 on recent is above the ceiling of 0.5000",)


def test_after_the_truth_changed_the_champion_is_held_to_the_floors_on_the_same_recent_rows() -> None:
    candidate = {"roc_auc": 0.65, "accuracy": 0.72}

    def decide(champion_on_recent: dict[str, float] | None) -> PromotionDecision:
        return _after_the_truth_changed(candidate, champion_on_recent)

    waived = decide({"roc_auc": 0.45, "accuracy": 0.40})
    assert "judged on recent; one the champion misses too there" in waived.policy.describe()[2]
    assert waived.verdict == "promote", waived.reasons
    assert waived.reasons[-2].startswith(
        "roc_auc 0.6500 on recent is below the floor of 0.7000, and champion v3's is 0.4500 on the same rows"
    )
    assert (
        waived.reasons[-1] == "the candidate meets every other floor on recent (accuracy 0.7200) and passed ONNX parity"
    )
    # The champion's value on the whole holdout (CHAMPION, 0.80) is not the same rows: without its value on recent
    # the floor is absolute.
    assert decide(None).reasons == ("roc_auc 0.6500 on recent is below the floor of 0.7000",)
    assert decide({"roc_auc": 0.75, "accuracy": 0.40}).reasons == (
        "roc_auc 0.6500 on recent is below the floor of 0.7000",
    )
    with pytest.raises(ValueError, match="champion_floor_metrics are the champion's on policy.floors_on"):
        decide_promotion(CHAMPION, CHAMPION, "3", True, "ok", GatePolicy(), champion_floor_metrics=CHAMPION)


def test_a_version_its_gate_refused_needs_a_reason_to_get_traffic_and_one_it_promoted_does_not() -> None:
    """``lineage.gate_refusal`` reads the tags the gate itself writes: the refusal names the gate's own reason."""
    refused = _decide({"roc_auc": 0.75, "accuracy": 0.79}).tags()
    promoted = _decide({"roc_auc": 0.82, "accuracy": 0.79}).tags()

    message = lineage.gate_refusal(refused, "churn", "4")

    assert message is not None
    assert message.startswith("version 4 of 'churn' was refused by its promotion gate (")
    assert refused[lineage.GATE_REASON].split("\n", 1)[0] in message
    assert 'driftloop rollout 4 --reason "WHY"' in message  # the version too: without it, the champion is rolled out
    assert lineage.gate_refusal(promoted, "churn", "4") is None
    assert lineage.gate_refusal({}, "churn", "4") is None  # no gate ran (a version registered by hand)
