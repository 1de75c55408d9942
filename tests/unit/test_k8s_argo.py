"""deployments/k8s-argo, checked offline: the Argo Rollouts canary, its AnalysisTemplate and the autoscaler.

No cluster runs here. The Rollout and the AnalysisTemplate are validated against Argo Rollouts' own CRD schemas
(v1.9.1, tests/data/argo-rollouts; strict: a field the schema does not know is an error, as `kubectl apply
--validate=strict` would report), the rest against Kubernetes' OpenAPI schemas. The analysis must judge with the
Docker canary's thresholds. rollout.sh's canary meets a stand-in kubectl that plays the Rollout's states.
"""

from __future__ import annotations

import copy
import gzip
import json
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from driftloop.deploy.canary import Thresholds
from driftloop.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
ARGO = ROOT / "deployments" / "k8s-argo"
K8S = ROOT / "deployments" / "k8s"
CRDS = ROOT / "tests" / "data" / "argo-rollouts"
KUBERNETES_VERSION = "1.33.0"


def docs(name: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((ARGO / name).read_text()) if doc is not None]


def one(name: str) -> dict[str, Any]:
    (doc,) = docs(name)
    return doc


def strict(schema: dict[str, Any]) -> dict[str, Any]:
    """The CRD schema with unknown fields refused wherever it lists its fields (and keeps no unknown ones)."""
    schema = copy.deepcopy(schema)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
                node.setdefault("additionalProperties", False)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


def crd_schema(name: str) -> dict[str, Any]:
    with gzip.open(CRDS / f"{name}.schema.json.gz", "rt") as file:
        return strict(json.load(file)["openAPIV3Schema"])


def validate_custom(doc: dict[str, Any], schema: dict[str, Any]) -> None:
    jsonschema.validate(doc, schema, cls=jsonschema.Draft7Validator)


@pytest.fixture(scope="module")
def rollout() -> dict[str, Any]:
    return one("rollout.yaml")


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return one("analysis-template.yaml")


def test_every_manifest_validates_against_its_schema(rollout: dict[str, Any], template: dict[str, Any]) -> None:
    validate_custom(rollout, crd_schema("rollout"))
    validate_custom(template, crd_schema("analysis-template"))
    kubernetes_validate.validate(one("hpa.yaml"), KUBERNETES_VERSION, strict=True)
    kustomization = one("kustomization.yaml")
    listed = {name for name in kustomization["resources"] if name.endswith(".yaml")}
    assert listed == {p.name for p in ARGO.glob("*.yaml")} - {"kustomization.yaml"}
    assert "../k8s" in kustomization["resources"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r["spec"]["strategy"]["canary"]["steps"][0].update(setWeigth=10), "setWeigth"),
        (lambda r: r["spec"]["strategy"]["canary"].update(maxSurge=[1]), "is not valid under any of the given"),
        (lambda r: r["spec"].update(replicas="two"), "'two' is not of type 'integer'"),
        (lambda r: r["spec"]["strategy"]["canary"]["analysis"]["args"][0].pop("name"), "'name' is a required"),
    ],
)
def test_the_crd_schema_refuses_a_broken_rollout(rollout: dict[str, Any], change: Any, message: str) -> None:
    broken = copy.deepcopy(rollout)
    change(broken)
    with pytest.raises(jsonschema.ValidationError, match=message):
        validate_custom(broken, crd_schema("rollout"))


def test_the_crd_schema_refuses_a_broken_analysis(template: dict[str, Any]) -> None:
    broken = copy.deepcopy(template)
    broken["spec"]["metrics"][0]["provider"]["prometheus"]["qurey"] = "up"
    with pytest.raises(jsonschema.ValidationError, match="qurey"):
        validate_custom(broken, crd_schema("analysis-template"))
    broken = copy.deepcopy(template)
    del broken["spec"]["metrics"][1]["provider"]
    with pytest.raises(jsonschema.ValidationError, match="'provider' is a required property"):
        validate_custom(broken, crd_schema("analysis-template"))


def test_the_rollout_runs_the_deployments_pods_and_the_autoscaler_scales_it(rollout: dict[str, Any]) -> None:
    deployment = next(d for d in yaml.safe_load_all((K8S / "serving-deployment.yaml").read_text()) if d)
    reference = rollout["spec"]["workloadRef"]
    assert (reference["kind"], reference["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert rollout["spec"]["selector"] == deployment["spec"]["selector"]
    hpa = one("hpa.yaml")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == (
        "argoproj.io/v1alpha1",
        "Rollout",
        rollout["metadata"]["name"],
    )
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["requests"]["cpu"]  # CPU utilization is a share of the request
    assert hpa["spec"]["minReplicas"] >= 2


def test_the_analysis_gets_every_argument_it_needs(rollout: dict[str, Any], template: dict[str, Any]) -> None:
    analysis = rollout["spec"]["strategy"]["canary"]["analysis"]
    assert [t["templateName"] for t in analysis["templates"]] == [template["metadata"]["name"]]
    given = {arg["name"] for arg in analysis["args"]}
    required = {arg["name"] for arg in template["spec"]["args"] if "value" not in arg}
    assert required == given == {"canary-hash", "stable-hash"}
    used = set()
    for metric in template["spec"]["metrics"]:
        text = json.dumps(metric)
        used |= {part.split("}}")[0] for part in text.split("{{args.")[1:]}
    assert used <= {arg["name"] for arg in template["spec"]["args"]}


def test_the_analysis_judges_with_the_docker_canarys_thresholds(template: dict[str, Any]) -> None:
    defaults = {arg["name"]: arg.get("value") for arg in template["spec"]["args"]}
    settings = Settings()
    thresholds = Thresholds.from_settings(settings)
    assert float(defaults["max-fault-rate"]) == thresholds.max_error_rate
    assert float(defaults["max-p99-seconds"]) == thresholds.max_p99_ms / 1000
    assert float(defaults["max-p99-ratio"]) == thresholds.max_p99_ratio
    assert float(defaults["p99-ratio-floor-seconds"]) == thresholds.relative_floor_ms / 1000


# A stand-in kubectl: records its arguments; plays the Rollout's phase and stable ReplicaSet from files the test
# writes, one state per poll (the last one repeats), so the script's sequence and rollback are checked.
STUB_KUBECTL = """#!/usr/bin/env bash
echo "$*" >> "$STUB_LOG"
state=$STUB_DIR/state
polls=$STUB_DIR/polls
case "$*" in
  *"get deployment/driftloop-serving"*) printf '%s' "$STUB_IMAGE" ;;
  *"{.status.phase}"*)
    n=$(cat "$polls" 2>/dev/null || echo 0)
    line=$(sed -n "$((n + 1))p" "$state"); [ -n "$line" ] || line=$(tail -n 1 "$state")
    echo $((n + 1)) > "$polls"
    echo "$line" > "$STUB_DIR/current"
    printf '%s' "${line%% *}" ;;
  *"{.status.abort}"*) a=$(cut -d' ' -f2 "$STUB_DIR/current"); [ "$a" = - ] || printf '%s' "$a" ;;
  *"{.status.stableRS}"*)
    if [ -f "$STUB_DIR/current" ]; then printf '%s' "$(cut -d' ' -f3 "$STUB_DIR/current")"; else printf old; fi ;;
  *"{.status.message}"*) printf 'analysis failed: server-fault-rate' ;;
esac
"""


def run_canary(tmp_path: Path, states: list[str], image: str = "driftloop/churn-serving:v3") -> tuple[int, str, list]:
    stub = tmp_path / "kubectl"
    stub.write_text(STUB_KUBECTL)
    stub.chmod(0o755)
    (tmp_path / "state").write_text("\n".join(states) + "\n")
    env = {"PATH": "/usr/bin:/bin", "KUBECTL": str(stub), "STUB_LOG": str(tmp_path / "calls"),
           "STUB_DIR": str(tmp_path), "STUB_IMAGE": image, "POLL_SECONDS": "1", "CANARY_TIMEOUT": "4"}  # fmt: skip
    result = subprocess.run(
        ["bash", str(K8S / "rollout.sh"), "canary", "4"], env=env, capture_output=True, text=True, timeout=60
    )
    calls = (tmp_path / "calls").read_text().splitlines() if (tmp_path / "calls").exists() else []
    return result.returncode, result.stdout + result.stderr, calls


NEW = "set image deployment/driftloop-serving serving=driftloop/churn-serving:v4"
BACK = "set image deployment/driftloop-serving serving=driftloop/churn-serving:v3"


def test_a_canary_that_passes_its_analysis_is_promoted(tmp_path: Path) -> None:
    code, output, calls = run_canary(tmp_path, ["Progressing - old", "Paused - old", "Healthy - new"])
    assert code == 0, output
    assert "canary promoted" in output
    assert [c for c in calls if "set image" in c] == [f"-n driftloop {NEW}"]


def test_a_canary_whose_analysis_fails_is_rolled_back(tmp_path: Path) -> None:
    code, output, calls = run_canary(tmp_path, ["Progressing - old", "Degraded true old"])
    assert code == 1
    assert "was aborted: analysis failed: server-fault-rate" in output
    assert "rolled back to driftloop/churn-serving:v3" in output
    assert [c for c in calls if "set image" in c] == [f"-n driftloop {NEW}", f"-n driftloop {BACK}"]


def test_a_canary_that_never_finishes_is_aborted_and_rolled_back(tmp_path: Path) -> None:
    code, output, calls = run_canary(tmp_path, ["Paused - old"])
    assert code == 1
    assert "did not finish within 4s; aborting it" in output
    assert any("patch rollout.argoproj.io/driftloop-serving --subresource=status" in c for c in calls)
    assert [c for c in calls if "set image" in c][-1] == f"-n driftloop {BACK}"


def test_the_version_already_serving_is_left_alone(tmp_path: Path) -> None:
    code, output, calls = run_canary(tmp_path, ["Healthy - old"], image="driftloop/churn-serving:v4")
    assert code == 0
    assert "serves rollout.argoproj.io/driftloop-serving already" in output
    assert not [c for c in calls if "set image" in c]
