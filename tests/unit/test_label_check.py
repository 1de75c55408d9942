from __future__ import annotations

import numpy as np

from driftloop.core.label_check import check_labels


def test_too_few_labels_are_not_judged() -> None:
    check = check_labels(np.array(["Yes"] * 10), np.array(["No"] * 10), 0.8, min_rows=50, max_drop=0.05)
    assert check.status == "insufficient labels"
    assert check.accuracy is None
    assert "need 50" in check.summary()


def test_a_drop_beyond_the_threshold_is_degraded() -> None:
    predicted = np.array(["Yes"] * 70 + ["No"] * 30)
    actual = np.array(["Yes"] * 60 + ["No"] * 40)  # 90% accurate
    assert check_labels(predicted, actual, 0.96, min_rows=50, max_drop=0.05).status == "degraded"
    assert check_labels(predicted, actual, 0.94, min_rows=50, max_drop=0.05).status == "ok"


def test_summary_reports_the_figures() -> None:
    check = check_labels(np.array(["No"] * 100), np.array(["No"] * 80 + ["Yes"] * 20), 0.9, 50, 0.05)
    assert check.accuracy == 0.8
    assert abs(check.drop - 0.1) < 1e-12
    assert "accuracy 0.8000 on 100 labelled rows" in check.summary()
