"""deployments/k8s, checked offline: no cluster runs here, so the manifests are validated against the pinned
Kubernetes version's OpenAPI schemas (strict: unknown fields are errors) and read for what a cluster would do
with them. The rollout script's render goes through real kubectl (kustomize needs no API server)."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from driftloop.serving.__main__ import GRACEFUL_SHUTDOWN_SECONDS  # the serving image's CMD

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deployments" / "k8s"
ROLLOUT = K8S / "rollout.sh"
KUBERNETES_VERSION = "1.33.0"  # the oldest minor still supported upstream when this was written
NOT_RESOURCES = {"kustomization.yaml", "prefect.k8s.yaml"}
PLACEHOLDER_IMAGE = "driftloop/churn-serving:v0-placeholder"


def load(name: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((K8S / name).read_text()) if doc is not None]


def kustomization() -> dict[str, Any]:
    return load("kustomization.yaml")[0]


def resources() -> list[dict[str, Any]]:
    return [doc for name in kustomization()["resources"] for doc in load(name)]


def find(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (doc,) = [doc for doc in docs if doc["kind"] == kind]
    return doc


def validate(doc: dict[str, Any]) -> str:
    return kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


@pytest.fixture(scope="module")
def deployment() -> dict[str, Any]:
    return find(resources(), "Deployment")


@pytest.fixture(scope="module")
def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (serving,) = deployment["spec"]["template"]["spec"]["containers"]
    return serving


@pytest.fixture(scope="module")
def kubectl() -> str:
    """kubectl for the render (`kubectl kustomize` works offline); $KUBECTL picks another one."""
    found = shutil.which(os.environ.get("KUBECTL", "kubectl"))
    if found is None:
        message = "kubectl not found (Debian: apt-get install kubernetes-client); the rollout render needs it"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


def run_rollout(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(ROLLOUT), *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=60
    )


def test_kustomization_lists_every_manifest() -> None:
    on_disk = {path.name for path in K8S.glob("*.yaml")} - NOT_RESOURCES
    assert set(kustomization()["resources"]) == on_disk
    assert kustomization()["namespace"] == "driftloop"
    # rollout.sh appends its own `images:` to a copy; a second one would be a duplicate key.
    assert "images" not in kustomization()


@pytest.mark.parametrize("name", sorted(kustomization()["resources"]))
def test_manifest_validates_strictly(name: str) -> None:
    docs = load(name)
    assert docs
    for doc in docs:
        assert validate(doc) == KUBERNETES_VERSION.rsplit(".", 1)[0]
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "driftloop"


def test_validator_rejects_broken_manifests(deployment: dict[str, Any]) -> None:
    typo = copy.deepcopy(deployment)
    typo["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"httpGet": {"path": "/ready"}}
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        validate(typo)

    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError, match="two"):
        validate(wrong_type)

    no_image = copy.deepcopy(deployment)
    del no_image["spec"]["template"]["spec"]["containers"][0]["name"]
    with pytest.raises(kubernetes_validate.ValidationError, match="name"):
        validate(no_image)


def test_probes_hit_ready_and_health_on_the_serving_port(deployment: dict[str, Any], container: dict) -> None:
    (port,) = container["ports"]
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["DRIFTLOOP_SERVE_PORT"] == str(port["containerPort"])
    assert env["DRIFTLOOP_SERVE_HOST"] == "0.0.0.0"  # noqa: S104 (a pod must listen beyond its loopback)
    assert env["DRIFTLOOP_MODEL_SOURCE"] == "file"

    probes = {kind: container[kind]["httpGet"] for kind in ("startupProbe", "readinessProbe", "livenessProbe")}
    assert probes["readinessProbe"]["path"] == "/ready"
    assert probes["livenessProbe"]["path"] == "/health"
    assert probes["startupProbe"]["path"] == "/health"
    for probe in probes.values():
        assert probe["port"] in (port["name"], port["containerPort"])

    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(port["containerPort"])
    assert annotations["prometheus.io/path"] == "/metrics"


def test_service_and_budget_select_the_serving_pods(deployment: dict[str, Any], container: dict) -> None:
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()
    assert all(key.startswith("app.kubernetes.io/") for key in pod_labels)

    service = find(resources(), "Service")
    assert service["spec"]["selector"] == selector
    assert [port["targetPort"] for port in service["spec"]["ports"]] == [container["ports"][0]["name"]]
    budget = find(resources(), "PodDisruptionBudget")
    assert budget["spec"]["selector"]["matchLabels"] == selector
    assert budget["spec"]["minAvailable"] < deployment["spec"]["replicas"]


def test_pod_runs_locked_down(deployment: dict[str, Any], container: dict) -> None:
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False

    security = container["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}

    # A read-only root: DRIFTLOOP_HOME (the SQLite prediction log without the Secret) and /tmp are emptyDirs.
    env = {item["name"]: item for item in container["env"]}
    empty_dirs = {volume["name"] for volume in pod["volumes"] if "emptyDir" in volume}
    writable = {mount["mountPath"] for mount in container["volumeMounts"] if mount["name"] in empty_dirs}
    assert {env["DRIFTLOOP_HOME"]["value"], "/tmp"} <= writable
    log_url = env["DRIFTLOOP_PREDICTION_LOG_URL"]["valueFrom"]["secretKeyRef"]
    assert log_url["optional"] is True

    # The image's numeric USER: the kubelet can then check runAsNonRoot, and files baked for it stay readable.
    image_user = re.search(r"^USER (\d+):(\d+)$", (ROOT / "deployments/serving/Dockerfile").read_text(), re.M)
    assert image_user is not None
    assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]) == tuple(
        map(int, image_user.groups())
    )

    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= container["resources"][kind].keys()


def test_rolling_update_never_drops_a_request_in_flight(deployment: dict[str, Any], container: dict) -> None:
    strategy = deployment["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate"
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0
    assert strategy["rollingUpdate"]["maxSurge"] >= 1

    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    pre_stop = int(command[1])
    assert pre_stop > 0
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= pre_stop + GRACEFUL_SHUTDOWN_SECONDS


def test_image_is_the_placeholder_rollout_replaces(container: dict) -> None:
    assert container["image"] == PLACEHOLDER_IMAGE
    assert container["imagePullPolicy"] == "IfNotPresent"


def test_rollout_render_sets_the_version_and_changes_nothing_else(kubectl: str) -> None:
    result = run_rollout(
        "render", "v7", KUBECTL=kubectl, DRIFTLOOP_MODEL_NAME="Churn", DRIFTLOOP_IMAGE_PREFIX="registry.example.com/ml"
    )
    assert result.returncode == 0, result.stderr
    rendered = [doc for doc in yaml.safe_load_all(result.stdout) if doc is not None]
    for doc in rendered:
        validate(doc)

    (serving,) = find(rendered, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert serving["image"] == "registry.example.com/ml/churn-serving:v7"
    serving["image"] = PLACEHOLDER_IMAGE
    key = lambda doc: (doc["kind"], doc["metadata"]["name"])  # noqa: E731
    assert sorted(rendered, key=key) == sorted(resources(), key=key)


def test_rollout_refuses_a_version_that_is_not_a_number() -> None:
    result = run_rollout("render", "latest")
    assert result.returncode == 2
    assert "VERSION must be a model version number, got 'latest'" in result.stderr


# No cluster can run here, so `set-image` meets a stand-in kubectl that records its arguments and fails
# `rollout status` on request: this checks the script's sequence and its undo, not Kubernetes.
STUB_KUBECTL = """#!/usr/bin/env bash
echo "$*" >> "$STUB_LOG"
if [ "${STUB_FAIL_STATUS:-}" = 1 ] && [[ "$*" == *"rollout status"* ]]; then exit 1; fi
"""


@pytest.mark.parametrize("fail", [False, True], ids=["ready", "never-ready"])
def test_set_image_waits_and_undoes_a_failed_rollout(tmp_path: Path, fail: bool) -> None:
    stub = tmp_path / "kubectl"
    stub.write_text(STUB_KUBECTL)
    stub.chmod(0o755)
    log = tmp_path / "calls"
    result = run_rollout("set-image", "4", KUBECTL=str(stub), STUB_LOG=str(log), STUB_FAIL_STATUS="1" if fail else "0")
    calls = log.read_text().splitlines()
    target = "-n driftloop"
    assert calls[0].startswith(f"{target} annotate deployment/driftloop-serving --overwrite kubernetes.io/change-cause")
    assert calls[1] == f"{target} set image deployment/driftloop-serving serving=driftloop/churn-serving:v4"
    assert calls[2].startswith(f"{target} rollout status deployment/driftloop-serving --timeout=")
    if fail:
        assert result.returncode == 1
        assert calls[3] == f"{target} rollout undo deployment/driftloop-serving"
        assert "did not become ready" in result.stderr
    else:
        assert result.returncode == 0, result.stderr
        assert len(calls) == 3


def prefect_deployments(path: Path) -> dict[str, dict[str, Any]]:
    return {deployment["name"]: deployment for deployment in yaml.safe_load(path.read_text())["deployments"]}


def test_kubernetes_prefect_file_mirrors_prefect_yaml() -> None:
    process = prefect_deployments(ROOT / "prefect.yaml")
    kubernetes = prefect_deployments(K8S / "prefect.k8s.yaml")
    assert kubernetes.keys() == process.keys()
    for name, deployment in kubernetes.items():
        pool = deployment.pop("work_pool")
        assert pool["name"] == "driftloop-kubernetes"
        assert process[name].pop("work_pool")["name"] == "driftloop-process"
        assert deployment == process[name]


def kubernetes_worker_variables() -> dict[str, Any]:
    """The job-variable schema a Prefect server gives a new `kubernetes` pool (from Prefect's own bundle)."""
    import prefect

    bundle = Path(prefect.__file__).parent / "server/api/collections_data/views/aggregate-worker-metadata.json"
    worker = json.loads(bundle.read_text())["prefect-kubernetes"]["kubernetes"]
    return worker["default_base_job_configuration"]["variables"]


def test_kubernetes_job_variables_fit_the_work_pool() -> None:
    schema = {**kubernetes_worker_variables(), "additionalProperties": False}
    for deployment in prefect_deployments(K8S / "prefect.k8s.yaml").values():
        variables = deployment["work_pool"]["job_variables"]
        jsonschema.validate(variables, schema)
        assert variables["env"]["DRIFTLOOP_DEPLOY"] == "local"

    with pytest.raises(jsonschema.ValidationError, match="Sometimes"):
        jsonschema.validate({**variables, "image_pull_policy": "Sometimes"}, schema)
