"""A rollout's result as people read it: its error line and its decision record, without an engine."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from driftloop.deploy.rollout import RolloutResult
from driftloop.errors import RolloutRolledBack


def _result(outcome: str, reason: str) -> RolloutResult:
    result = RolloutResult("churn", "2", "driftloop/churn-serving:v2", "canary", datetime(2026, 12, 6, tzinfo=UTC))
    result.outcome, result.reason = outcome, reason  # type: ignore[assignment]
    result.record_path = Path("/home/rollouts/20261206T000000-churn-v2-rolled_back.md")
    return result


def test_a_rollback_is_one_error_line_and_the_candidate_s_log_stays_in_the_record() -> None:
    """Trial 21: the CLI's error went on for the five log lines of the crashed candidate."""
    logs = "  INFO: Started server process [1]\n  INFO: Waiting for application startup."
    result = _result("rolled_back", f"candidate crashed: slot green stopped during the 10% bake:\n{logs}")
    message = str(RolloutRolledBack(result))
    assert message == (
        "rollout of v2 rolled back: candidate crashed: slot green stopped during the 10% bake "
        "(record: /home/rollouts/20261206T000000-churn-v2-rolled_back.md)"
    )
    assert "\n" not in message
    record = result.markdown()
    assert "# Rollout of churn v2: ROLLED BACK" in record
    assert "Started server process [1]" in record
    one_line = _result("rolled_back", "smoke test: outputs differ: label 'yes' vs 'no'")
    assert one_line.summary == "smoke test: outputs differ: label 'yes' vs 'no'"


def test_a_rollout_with_nothing_to_do_says_so_and_is_no_failure() -> None:
    result = _result("unchanged", "v2 serves all traffic already, from slot blue running this image")
    assert result.ok
    assert "# Rollout of churn v2: nothing to roll out" in result.markdown()
    assert not _result("rolled_back", "smoke test: outputs differ").ok
    assert _result("completed", "candidate ready and smoke-tested; traffic switched at once").ok
