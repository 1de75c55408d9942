"""The Grafana dashboards and their queries, for the tests that validate them offline and on a real Prometheus."""

from __future__ import annotations

from pathlib import Path
from typing import Any

DASHBOARD_DIR = Path(__file__).resolve().parents[2] / "deployments" / "grafana" / "dashboards"
DASHBOARDS = sorted(DASHBOARD_DIR.glob("*.json"))


def dashboard_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel or annotation title, PromQL) for every query of a dashboard."""
    queries = [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel["targets"]]
    return queries + [(a["name"], a["expr"]) for a in dashboard["annotations"]["list"]]
