"""The Argo canary's AnalysisTemplate (deployments/k8s-argo) run against a real Prometheus scraping real servers.

No cluster runs here, so the Rollout controller is played by the test where it matters: each metric's query,
with its arguments put in as Argo Rollouts does (`{{args.NAME}}` replaced through the whole metric), goes to
Debian's Prometheus, which scrapes real model servers labelled as the AnalysisTemplate's scrape job labels pods
(namespace, rollouts_pod_template_hash). The success condition is then read as Argo reads it: its expressions
(`len`, `or`, `isNaN`, comparisons) are also Python, so Python evaluates them here.

Stable and a healthy canary: two servers of the same version. A failing canary: a server that answers every
prediction with 503 (no model loaded), a real server fault. Each rule is seen to fail where its threshold is
crossed and to pass where it is not.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support.bundles import train_model, write_bundle
from tests.support.prometheus import Prometheus, prometheus_scraping
from tests.support.serving import server_process

pytestmark = pytest.mark.integration

TEMPLATE = Path(__file__).resolve().parents[2] / "deployments" / "k8s-argo" / "analysis-template.yaml"
NAMESPACE = "driftloop"
HASHES = {"stable": "6f7d8c9b5", "canary": "5c4b3a2d1", "failing": "9e8f7a6b5"}


def metrics_with(args: dict[str, str]) -> dict[str, dict[str, Any]]:
    """The template's metrics with its arguments (defaults, then ``args``) put in, by metric name."""
    template = yaml.safe_load(TEMPLATE.read_text())
    values = {arg["name"]: arg.get("value") for arg in template["spec"]["args"]} | args
    resolved = {}
    for metric in template["spec"]["metrics"]:
        text = json.dumps(metric)
        for name, value in values.items():
            text = text.replace("{{args." + name + "}}", str(value))
        assert "{{args." not in text, f"{metric['name']}: an argument was not given"
        resolved[metric["name"]] = json.loads(text)
    return resolved


def judge(prometheus: Prometheus, metric: dict[str, Any], at: float | None = None) -> tuple[bool, list[float]]:
    """One measurement (now, or at the Unix time ``at``): the query's instant vector, and whether the success
    condition holds on it."""
    query = metric["provider"]["prometheus"]["query"]
    result = [float(sample["value"][1]) for sample in prometheus.query(query, at)]
    names = {"result": result, "len": len, "isNaN": math.isnan}
    return bool(eval(metric["successCondition"], {"__builtins__": {}}, names)), result  # noqa: S307


def judged(
    prometheus: Prometheus, canary: str, at: float | None = None, **args: str
) -> dict[str, tuple[bool, list[float]]]:
    given = {"canary-hash": HASHES[canary], "stable-hash": HASHES["stable"], "namespace": NAMESPACE, **args}
    return {name: judge(prometheus, metric, at) for name, metric in metrics_with(given).items()}


def test_the_canary_analysis_passes_a_healthy_canary_and_fails_a_faulty_one(tmp_path: Path) -> None:
    model = train_model(rows=600, seed=0)
    bundle = write_bundle(tmp_path / "bundle" / "v1", model, "1")
    with (
        server_process(tmp_path / "stable", bundle) as stable,
        server_process(tmp_path / "canary", bundle) as canary,
        server_process(tmp_path / "failing", None) as failing,
    ):
        servers = {"stable": stable, "canary": canary, "failing": failing}
        targets = {name: server.url.removeprefix("http://") for name, server in servers.items()}
        labels = {
            targets[name]: {"namespace": NAMESPACE, "rollouts_pod_template_hash": HASHES[name]} for name in targets
        }
        with prometheus_scraping(tmp_path / "prometheus", list(targets.values()), labels=labels) as prometheus:
            records = model.records(50)

            def send_traffic(seconds: float) -> None:
                deadline = time.monotonic() + seconds
                while time.monotonic() < deadline:
                    for name, server in servers.items():
                        for record in records[:10]:
                            answer = httpx.post(f"{server.url}/predict", json={"features": record}, timeout=10)
                            assert answer.status_code == (503 if name == "failing" else 200), answer.text
                    time.sleep(0.5)

            send_traffic(20)  # across several scrapes: rates need two samples
            for name in servers:
                prometheus.wait_for(
                    f'sum(rate(driftloop_request_latency_seconds_count{{rollouts_pod_template_hash="{HASHES[name]}"}}'
                    "[1m])) > 0"
                )

            healthy = judged(prometheus, "canary")
            if not all(ok for ok, _ in healthy.values()):
                # Argo measures every 30 s and fails the analysis at a metric's second failed measurement
                # (failureLimit: 1), so one noisy window on a busy machine is not a verdict yet (a healthy canary's
                # p99 once read 9x the stable's, with the test suite running beside it). The next measurement, once
                # the 1m window has moved past that traffic, decides.
                send_traffic(65)
                again = judged(prometheus, "canary")
                healthy = {name: (ok or again[name][0], again[name][1]) for name, (ok, _) in healthy.items()}
            assert {name: ok for name, (ok, _) in healthy.items()} == {
                "server-fault-rate": True,
                "p99-latency": True,
                "p99-vs-stable": True,
            }, healthy
            assert healthy["server-fault-rate"][1] == []  # no server faults at all: no series to divide

            faulty = judged(prometheus, "failing")
            assert faulty["server-fault-rate"][0] is False, faulty
            assert faulty["server-fault-rate"][1] == [pytest.approx(1.0)]  # every request a 503

            # The latency rules, each seen to fire where the threshold is crossed and to pass where it is not, on
            # the same real scrapes: every judgement below is evaluated at one instant. The ratio's thresholds come
            # from the ratio measured there, since two servers of one version on a busy machine do not reliably
            # read "about 1" (one read 10x the other's p99, from a few slow requests of the stable's).
            at = time.time()
            strict = judged(prometheus, "canary", at, **{"max-p99-seconds": "0.000001"})
            assert strict["p99-latency"][0] is False
            assert strict["p99-latency"][1][0] > 0.000001
            no_floor = {"p99-ratio-floor-seconds": "0"}
            (ratio,) = judged(prometheus, "canary", at, **no_floor)["p99-vs-stable"][1]
            assert 0 < ratio < math.inf
            above = judged(prometheus, "canary", at, **no_floor, **{"max-p99-ratio": str(ratio / 2)})
            assert above["p99-vs-stable"] == (False, [ratio])
            within = judged(prometheus, "canary", at, **no_floor, **{"max-p99-ratio": str(ratio * 2)})
            assert within["p99-vs-stable"] == (True, [ratio])
