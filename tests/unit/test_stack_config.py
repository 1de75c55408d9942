"""The compose stack's configuration, checked without starting it: compose's own parser (`docker-compose config`),
the secret refusals, Prometheus' targets and the Grafana provisioning against the metrics the server exports."""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from driftloop.serving.health_metrics import ModelHealthMetrics
from driftloop.serving.metrics import ServingMetrics
from driftloop.settings import Settings
from tests.support.checks import make_record
from tests.support.compose import SECRETS, compose_command
from tests.support.dashboards import DASHBOARDS, dashboard_queries

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
SUBSTITUTES = ROOT / "docker-compose.substitutes.yml"
ENV_EXAMPLE = ROOT / ".env.example"
ENTRYPOINT = ROOT / "deployments" / "project" / "entrypoint.sh"
PROMETHEUS_DIR = ROOT / "deployments" / "prometheus"
GRAFANA_DIR = ROOT / "deployments" / "grafana"
SUBSTITUTED = {"postgres", "redis", "nginx", "prometheus"}
ONE_SHOT = {"preflight", "mlflow-accounts"}
METRIC_NAME = re.compile(r"\b(driftloop_[a-z0-9_]+|up)\b")


def example_env() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value
    return values


def write_env(path: Path, **overrides: str) -> Path:
    values = example_env()
    values.update({name: f"a-real-secret-{index:02d}-xyz" for index, name in enumerate(SECRETS)})
    values.update(overrides)
    path.write_text("".join(f"{key}={value}\n" for key, value in values.items() if value is not None))
    return path


def run_config(env_file: Path, *files: Path) -> subprocess.CompletedProcess[str]:
    argv = [*compose_command(), "--env-file", str(env_file), "--project-directory", str(ROOT)]
    for file in files:
        argv += ["-f", str(file)]
    clean_env = {key: value for key, value in os.environ.items() if key not in SECRETS}
    return subprocess.run(
        [*argv, "config"], capture_output=True, text=True, cwd=ROOT, env=clean_env, timeout=60, check=False
    )


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The merged configuration (base + substitutes) as compose itself resolves it, with a complete test .env."""
    env_file = write_env(tmp_path_factory.mktemp("stack") / "test.env", DRIFTLOOP_PROXY_DIR="/srv/driftloop-proxy")
    result = run_config(env_file, COMPOSE, SUBSTITUTES)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def volume_pairs(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of each volume, from compose v1's "src:dst:mode" strings or v2's mappings."""
    pairs = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume.get("source", ""), volume["target"]
        pairs.append((source, target))
    return pairs


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def test_the_base_file_alone_is_valid(tmp_path: Path) -> None:
    result = run_config(write_env(tmp_path / "test.env"), COMPOSE)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert {"postgres", "prefect-server", "prefect-worker", "mlflow", "nginx", "prometheus", "grafana", "redis"} <= set(
        services
    )


def test_every_service_runs_on_the_host_network_with_init(config: dict[str, Any]) -> None:
    for name, service in config["services"].items():
        assert service.get("network_mode") == "host", name
        assert service.get("init") is True, name
        if "build" in service:
            assert service["build"].get("network") == "host", name


def test_every_long_running_service_has_a_healthcheck_and_restarts(config: dict[str, Any]) -> None:
    for name, service in config["services"].items():
        if name in ONE_SHOT:
            assert service.get("restart") == "no", name
            continue
        assert service.get("restart") == "unless-stopped", name
        test = service.get("healthcheck", {}).get("test")
        assert test, name
        assert test[0] in {"CMD", "CMD-SHELL"}, name
        assert "curl" not in json.dumps(test), f"{name}: slim images have no curl"
        assert "python" not in test[1:2], f"{name}: a probe every few seconds must not start Python (0.2 s of CPU)"


def test_dependencies_wait_for_health_and_the_preflight_check(config: dict[str, Any]) -> None:
    services = config["services"]
    for name, service in services.items():
        for dependency, condition in service.get("depends_on", {}).items():
            expected = "service_completed_successfully" if dependency in ONE_SHOT else "service_healthy"
            assert condition["condition"] == expected, f"{name} -> {dependency}"

    def waits_for_preflight(name: str) -> bool:
        depends = services[name].get("depends_on", {})
        return "preflight" in depends or any(waits_for_preflight(dependency) for dependency in depends)

    assert all(waits_for_preflight(name) for name in services if name not in ONE_SHOT)
    assert set(services["prefect-worker"]["depends_on"]) >= {"prefect-server", "mlflow", "redis", "nginx"}


def test_every_service_resolves_every_service_name_to_loopback(config: dict[str, Any]) -> None:
    names = set(config["services"]) - ONE_SHOT
    for name, service in config["services"].items():
        hosts = service.get("extra_hosts", {})
        if isinstance(hosts, list):
            hosts = dict(entry.split(":", 1) for entry in hosts)
        assert {host for host, address in hosts.items() if address == "127.0.0.1"} >= names, name


def test_the_substitutes_replace_exactly_the_third_party_images(config: dict[str, Any]) -> None:
    services = config["services"]
    for name in SUBSTITUTED:
        assert services[name]["image"] == f"driftloop/{name}:local"
    assert not services["grafana"]["image"].startswith("driftloop/")
    assert environment(services["prefect-worker"])["DRIFTLOOP_PROXY_IMAGE"] == "driftloop/nginx:local"


def test_the_worker_starts_flow_containers_and_hands_the_ship_job_the_proxy(config: dict[str, Any]) -> None:
    """The worker holds the socket to start containers; the proxy directory goes to the ship job's container only
    (tests/unit/test_work_pools.py renders its mounts), at the host path nginx mounts."""
    worker, nginx = config["services"]["prefect-worker"], config["services"]["nginx"]
    env = environment(worker)
    assert env["DRIFTLOOP_WORK_POOL"] == "driftloop-docker"
    assert "DRIFTLOOP_DEPLOY" not in env  # the flow containers' is in their job variables
    assert nginx["container_name"] == env["DRIFTLOOP_PROXY_CONTAINER"]
    assert ("/var/run/docker.sock", "/var/run/docker.sock") in volume_pairs(worker)
    assert ("/srv/driftloop-proxy", "/srv/driftloop-proxy") not in volume_pairs(worker)
    assert env["DRIFTLOOP_PROXY_CONFIG_DIR"] == "/srv/driftloop-proxy"
    home = config["volumes"]["driftloop-home"]["name"]
    assert env["DRIFTLOOP_HOME_VOLUME"] == home
    assert (home, "/var/lib/driftloop") in volume_pairs(worker)
    assert [source for source, _ in volume_pairs(nginx)] == ["/srv/driftloop-proxy"]
    assert env["DRIFTLOOP_SLOT_PORTS"] == ",".join(map(str, Settings.model_fields["slot_ports"].default))
    # Passed on to the slots, which the engine starts without compose's extra_hosts: no service names.
    assert "@127.0.0.1:" in env["DRIFTLOOP_REDIS_URL"]
    assert "@127.0.0.1:" in env["DRIFTLOOP_PREDICTION_LOG_URL"]


def test_mlflow_uses_psycopg2_and_allows_its_service_name() -> None:
    script = ENTRYPOINT.read_text()
    assert "postgresql+psycopg2://" in script
    assert "--serve-artifacts" in script
    assert "--artifacts-destination" in script
    assert re.search(r'hosts="mlflow,mlflow:\$port', script)


def test_the_control_planes_take_credentials_from_the_secrets(config: dict[str, Any]) -> None:
    services = config["services"]
    worker = environment(services["prefect-worker"])
    assert worker["PREFECT_API_AUTH_STRING"] == f"driftloop:{worker_secret(config, 'PREFECT_AUTH_PASSWORD')}"
    assert worker["MLFLOW_TRACKING_USERNAME"] == "driftloop"
    assert worker["MLFLOW_TRACKING_PASSWORD"] == worker_secret(config, "MLFLOW_LOOP_PASSWORD")
    assert "MLFLOW_ADMIN_PASSWORD" not in worker, "the worker must not hold MLflow's admin password"
    assert set(services["mlflow-accounts"]["depends_on"]) == {"mlflow"}
    assert services["prefect-worker"]["depends_on"]["mlflow-accounts"]["condition"] == "service_completed_successfully"
    script = ENTRYPOINT.read_text()
    assert 'export PREFECT_SERVER_API_AUTH_STRING="driftloop:$PREFECT_AUTH_PASSWORD"' in script
    assert "exec mlflow server --app-name basic-auth" in script
    auth_ini = (ROOT / "deployments" / "project" / "mlflow-basic-auth.ini").read_text()
    assert re.search(r"^default_permission = READ$", auth_ini, re.MULTILINE)
    assert not re.search(r"^admin_password", auth_ini, re.MULTILINE), "no admin password in a file"


def worker_secret(config: dict[str, Any], name: str) -> str:
    """The value compose resolved for secret ``name`` (write_env gives each its own)."""
    return environment(config["services"]["preflight"])[name]


def test_every_password_is_mandatory_in_the_compose_file() -> None:
    text = COMPOSE.read_text()
    references = re.findall(r"\$\{([A-Z_]*(?:PASSWORD|SECRET))([^}]*)\}", text)
    assert {name for name, _ in references} == set(SECRETS)
    for name, rest in references:
        assert rest.startswith(":?"), f"${{{name}{rest}}} must refuse when unset, not default"


@pytest.mark.parametrize("missing", SECRETS)
def test_compose_refuses_an_unset_password(tmp_path: Path, missing: str) -> None:
    env_file = write_env(tmp_path / "test.env", **{missing: None})  # type: ignore[arg-type]
    result = run_config(env_file, COMPOSE)
    assert result.returncode != 0
    assert f"set {missing} in .env" in result.stderr


class _Health(BaseHTTPRequestHandler):
    """/health answers 200, anything else 404."""

    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/health" else 404)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        pass


def http_ok(*args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"]}  # no secrets: the probe checks none
    return subprocess.run(
        ["bash", str(ENTRYPOINT), "http-ok", *args], env=env, capture_output=True, text=True, timeout=30
    )


def test_the_health_probe_passes_only_on_a_200_from_the_port() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = str(server.server_address[1])
    try:
        assert http_ok(port, "/health").returncode == 0
        assert http_ok(port, "/missing").returncode == 1
    finally:
        server.shutdown()
        server.server_close()
    assert http_ok(port, "/health").returncode != 0  # nothing listens any more
    wrong = http_ok(port)
    assert wrong.returncode == 1
    assert "usage: http-ok PORT PATH" in wrong.stderr


def run_check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {"PATH": os.environ["PATH"]}
    return subprocess.run(
        ["bash", str(ENTRYPOINT), "check"], env={**base, **env}, capture_output=True, text=True, timeout=30
    )


def test_the_preflight_check_refuses_the_example_placeholders() -> None:
    placeholders = {key: value for key, value in example_env().items() if key in SECRETS}
    assert set(placeholders) == set(SECRETS)
    result = run_check(placeholders)
    assert result.returncode == 1
    for name in SECRETS:
        assert f"{name} still has the placeholder from .env.example" in result.stderr


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "is empty"),
        ("short-1", "shorter than 12"),
        ("has spaces in it!", "may only contain"),
        ("CHANGEME-1234", "placeholder"),
    ],
)
def test_the_preflight_check_refuses_weak_secrets(value: str, message: str) -> None:
    result = run_check({"REDIS_PASSWORD": value})
    assert result.returncode == 1
    assert message in result.stderr


def test_the_preflight_check_accepts_real_secrets() -> None:
    result = run_check({name: f"a-real-secret-{index:02d}-xyz" for index, name in enumerate(SECRETS)})
    assert result.returncode == 0, result.stderr


def serving_targets(prometheus: dict[str, Any]) -> dict[str, str]:
    (job,) = [job for job in prometheus["scrape_configs"] if job["job_name"] == "driftloop-serving"]
    return {group["labels"]["slot"]: target for group in job["static_configs"] for target in group["targets"]}


def test_prometheus_scrapes_the_default_slot_ports() -> None:
    prometheus = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    blue, green = Settings.model_fields["slot_ports"].default
    assert serving_targets(prometheus) == {"blue": f"slot-blue:{blue}", "green": f"slot-green:{green}"}


def test_prometheus_start_script_renders_the_stacks_ports(tmp_path: Path) -> None:
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "prometheus").write_text('#!/bin/sh\necho "$@"\n')
    (fake_bin / "prometheus").chmod(0o755)
    env = {
        "PATH": f"{fake_bin}:{os.environ['PATH']}",
        "SLOT_PORTS": "18101,18102",
        "PROMETHEUS_PORT": "19090",
        "CONFIG_SOURCE": str(PROMETHEUS_DIR),
        "DATA_DIR": str(tmp_path / "data"),
    }
    result = subprocess.run(
        ["sh", str(PROMETHEUS_DIR / "start.sh")], env=env, capture_output=True, text=True, timeout=30, check=True
    )
    assert "--web.listen-address=127.0.0.1:19090" in result.stdout
    rendered = yaml.safe_load((tmp_path / "data" / "config" / "prometheus.yml").read_text())
    assert serving_targets(rendered) == {"blue": "slot-blue:18101", "green": "slot-green:18102"}
    assert (tmp_path / "data" / "config" / "alerts.yml").is_file()


@pytest.fixture(scope="module")
def exported_metrics() -> set[str]:
    """Every sample name the model server exports, with each labelled metric given one child."""
    metrics = ServingMetrics()
    metrics.count_predictions("churn", "1", "yes")
    metrics.count_error("churn", "predict", "invalid_input")
    metrics.request_timer("churn", "predict").observe(0.001)
    metrics.model_timer("churn").observe(0.0001)
    metrics.set_model("churn", "1", "abc")
    metrics.reloads.labels("churn", "ok").inc()
    metrics.cache.labels("hit").inc()
    check = make_record(datetime(2026, 12, 1, tzinfo=UTC), "churn", 1, 2.0, 400, "1", calibrated=True)
    metrics.registry.register(ModelHealthMetrics(lambda: {"churn": check}, ["churn"]))
    text = metrics.render().decode()
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}


def referenced_metrics(expr: str) -> set[str]:
    return {name for name in METRIC_NAME.findall(expr) if name != "up"}


def test_grafana_datasource_is_the_stacks_prometheus(config: dict[str, Any]) -> None:
    provisioning = yaml.safe_load((GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (source,) = provisioning["datasources"]
    assert (source["type"], source["uid"], source["url"]) == (
        "prometheus",
        "prometheus",
        "http://prometheus:${PROMETHEUS_PORT}",
    )
    grafana = config["services"]["grafana"]
    assert "PROMETHEUS_PORT" in environment(grafana)
    targets = [target for _, target in volume_pairs(grafana)]
    assert "/etc/grafana/provisioning" in targets
    dashboards = yaml.safe_load((GRAFANA_DIR / "provisioning" / "dashboards" / "driftloop.yml").read_text())
    assert dashboards["providers"][0]["options"]["path"] in targets


def test_there_are_the_serving_and_the_model_health_boards() -> None:
    assert [path.name for path in DASHBOARDS] == ["driftloop.json", "model-health.json"]
    uids = [json.loads(path.read_text())["uid"] for path in DASHBOARDS]
    assert len(set(uids)) == len(uids)


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.name)
def test_grafana_dashboard_queries_metrics_the_server_exports(path: Path, exported_metrics: set[str]) -> None:
    dashboard = json.loads(path.read_text())
    panels = dashboard["panels"]
    assert panels
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "prometheus"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "prometheus", panel["title"]
    for annotation in dashboard["annotations"]["list"]:
        assert annotation["datasource"]["uid"] == "prometheus", annotation["name"]
    for title, expr in dashboard_queries(dashboard):
        missing = referenced_metrics(expr) - exported_metrics
        assert not missing, f"{title}: {missing} not exported by the server"
    joined = "\n".join(expr for _, expr in dashboard_queries(dashboard))
    required = {
        "driftloop.json": (
            "driftloop_request_latency_seconds_count",  # requests
            "histogram_quantile(0.5,",
            "histogram_quantile(0.99,",
            "by (model, endpoint, reason) (rate(driftloop_request_errors_total",
            "by (model, model_version, label) (rate(driftloop_predictions_total",
            "driftloop_model_info",
        ),
        "model-health.json": (
            "driftloop_drift_share",
            "driftloop_drift_weighted_share",
            "driftloop_drift_column_strength",
            "driftloop_estimated_accuracy",
            'driftloop_realized_performance{metric="accuracy"}',
            "driftloop_label_coverage",
            "driftloop_drift_episode_opened",  # episodes, as annotations
            "driftloop_model_info offset",  # new versions served (retrains), as annotations
        ),
    }[path.name]
    for expr in required:
        assert expr in joined
    assert len({panel["id"] for panel in panels}) == len(panels)


def test_alert_rules_query_metrics_the_server_exports(exported_metrics: set[str]) -> None:
    rules = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())
    exprs = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    assert exprs
    for expr in exprs:
        assert not referenced_metrics(expr) - exported_metrics, expr
