"""The one settings object: read once from the environment (prefix ``DRIFTLOOP_``), every path absolute."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from driftloop.core.drift_rule import EPISODE_TRIGGERS, DriftRule, EpisodeTrigger
from driftloop.core.lineage import MODEL_NAME

PACKAGE_DIR = Path(__file__).resolve().parent
BUNDLED_DATA = PACKAGE_DIR / "data" / "churn" / "churn.csv.gz"
BUNDLED_SCHEMA = PACKAGE_DIR / "data" / "churn" / "schema.yaml"

RolloutStrategy = Literal["blue-green", "canary"]

# Every process driftloop starts or configures gets these: no telemetry leaves the machine.
TELEMETRY_OFF = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
}
# Every flow run says it is alive this often (Prefect's minimum); io/unresponsive_runs.py crashes the silent ones.
FLOW_HEARTBEAT_SECONDS = 30


class Settings(BaseSettings):
    """driftloop's configuration. Environment variables win over defaults; see the README table."""

    model_config = SettingsConfigDict(env_prefix="DRIFTLOOP_", frozen=True, extra="ignore")

    home: Path = Field(default=Path(".driftloop"), description="Data directory for every local store.")
    model_name: str = Field(default="churn", pattern=MODEL_NAME.pattern)
    experiment_name: str = "driftloop"
    data_path: Path = Field(default=BUNDLED_DATA, description="Default training snapshot (CSV or Parquet).")
    schema_path: Path = Field(default=BUNDLED_SCHEMA, description="Schema file describing data_path.")
    project_file: Path = Field(
        default=Path("driftloop.yaml"),
        description="The models of the installation; without this file, one model: model_name on data_path.",
    )

    mlflow_tracking_uri: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DRIFTLOOP_MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_URI"),
        description="Unset: MLflow on a SQLite file under home.",
    )
    mlflow_ui_url: str | None = Field(
        default=None, description="Where people open MLflow; default: the tracking server, or the local UI."
    )
    mlflow_ui_port: int = Field(default=5000, ge=1, le=65535)
    start_mlflow_ui: bool = Field(default=True, description="Start the MLflow UI with the local services.")

    prefect_api_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DRIFTLOOP_PREFECT_API_URL", "PREFECT_API_URL"),
        description="Unset: a local Prefect server that driftloop starts and reuses.",
    )
    prefect_api_auth_string: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("DRIFTLOOP_PREFECT_API_AUTH_STRING", "PREFECT_API_AUTH_STRING"),
        description="user:password the Prefect API requires (the local server is started with it; clients send "
        "it). Required when prefect_host is not a loopback address.",
    )
    prefect_host: str = "127.0.0.1"
    prefect_port: int = Field(default=4200, ge=1, le=65535)
    service_start_timeout: float = Field(default=120.0, gt=0)
    prefect_patience: float = Field(
        default=30.0,
        gt=0,
        description="Seconds a flow run of the CLI goes on while the Prefect API does not answer; then it stops.",
    )

    seed: int = 42
    holdout_fraction: float = Field(default=0.25, gt=0.0, lt=1.0)
    log_sklearn_model: bool = Field(
        default=True,
        description="Each training run also logs the fitted scikit-learn pipeline (skops format) for inspection "
        "and reproduction: about 2.3 s of CPU on a 2-core machine, and its size in the artifact store; false: the "
        "ONNX model only, which is all that serving, scoring and the checks load.",
    )

    # The model server.
    serve_host: str = "127.0.0.1"
    serve_port: int = Field(default=8000, ge=1, le=65535)
    model_source: Literal["registry", "file"] = Field(
        default="registry", description="registry: follow the champion alias; file: serve model_dir (an image)."
    )
    model_dir: Path | None = Field(default=None, description="Model bundle directory for model_source=file.")
    serve_models: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="More registered models the one server serves beside model_name (the default), e.g. wine,diabetes.",
    )
    reload_interval: float = Field(default=2.0, gt=0, description="Seconds between checks of the champion alias.")
    max_batch_rows: int = Field(default=1000, ge=1)
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    header_timeout: float = Field(
        default=10.0, gt=0, description="Seconds a request's headers may take to arrive: then 408 and closed."
    )
    body_timeout: float = Field(
        default=30.0,
        gt=0,
        description="Seconds a request's body may take to arrive once its headers have: then closed.",
    )
    max_connections: int = Field(
        default=1000, ge=1, description="Open connections (and requests in flight) before new requests get 503."
    )
    feedback_token: SecretStr | None = Field(
        default=None,
        description="Bearer token /feedback requires (Authorization: Bearer ...). Without one, only a server bound "
        "to a loopback address and not behind_proxy takes labels.",
    )
    behind_proxy: bool = Field(
        default=False, description="Reached through a proxy listening on other addresses (the slots behind nginx)."
    )
    unknown_categories: Literal["error", "ignore"] = Field(
        default="error", description="A category outside the schema: 422 (error) or scored as unknown (ignore)."
    )
    prediction_log: bool = True
    prediction_log_url: str | None = Field(
        default=None, description="SQLAlchemy URL of the prediction log; default: SQLite under home."
    )
    prediction_log_queue: int = Field(default=20_000, ge=1, description="Pending predictions before drops.")
    redis_url: str | None = Field(default=None, description="Set to cache responses in Redis; off by default.")
    cache_ttl_seconds: int = Field(default=3600, ge=1)

    # Batch scoring (driftloop score).
    dask_scheduler: str | None = Field(
        default=None, description="A Dask scheduler's address (tcp://host:8786) to score on; unset: a local cluster."
    )
    dask_worker_wait: float = Field(
        default=300.0,
        ge=0,
        description="Seconds `driftloop score` waits for a worker to join a Dask scheduler that has none (an "
        "adaptive cluster scaled to zero); then it fails.",
    )
    score_log_fraction: float = Field(
        default=0.01, ge=0, le=1, description="The share of batch-scored rows logged for the drift check."
    )

    # Drift monitoring and retraining.
    drift_cron: str = Field(default="*/10 * * * *", description="Schedule of the drift-check deployment (UTC).")
    drift_window_rows: int = Field(default=1000, ge=1, description="The drift check reads the last N predictions.")
    drift_min_rows: int = Field(default=200, ge=1, description="Fewer rows: 'insufficient data', never drift.")
    drift_chunk_rows: int = Field(
        default=500_000,
        ge=1_000,
        description="A window of more rows is read in chunks of this many: the features' verdict stays exact in "
        "bounded memory; the estimate, segments and report use a seeded sample of about this many rows.",
    )
    drift_report: bool = Field(
        default=True,
        description="A check that opens a drift episode also writes Evidently's HTML report (about 13 s of CPU on a "
        "2-core machine, about half of it importing Evidently); false: the verdict, metrics and summaries only.",
    )
    drift_share: float = Field(default=0.5, gt=0, le=1, description="Dataset drift ⇔ drifted column share ≥ this.")
    drift_rule: DriftRule = Field(
        default="share",
        description="Which share decides the drift verdict: share (Evidently's), weighted (by the features' "
        "importance to the model) or either.",
    )
    drift_opens_episode: Annotated[tuple[EpisodeTrigger, ...], NoDecode] = Field(
        default=EPISODE_TRIGGERS,
        min_length=1,
        description="What opens a drift episode (comma-separated): features (the verdict, by the rule), estimate "
        "(a label-free estimated drop), labels (the label check).",
    )
    label_min_rows: int = Field(default=100, ge=1, description="Labelled rows needed for the concept-drift check.")
    label_max_drop: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="Concept drift beyond this vs holdout: accuracy drop (classifiers), relative RMSE rise (regressors;"
        " 0.1 = 10% worse).",
    )
    retrain_cooldown_seconds: float = Field(default=600, ge=0, description="No retrain this soon after another.")
    retrain_min_improvement: float = Field(
        default=0.0,
        ge=0,
        description="A retrain's improvement interval (on the recent rows) must lie above this, not just above 0.",
    )
    retrain_min_new_labels: int = Field(
        default=100, ge=1, description="New labelled rows that make a refused or skipped retrain worth another try."
    )
    retrain_timeout_seconds: float = Field(
        default=7200, gt=0, description="A retrain still running after this long is taken as failed."
    )
    alert_webhook_url: str | None = Field(default=None, description="POST drift and rollback alerts here.")
    sql_password: SecretStr | None = Field(
        default=None,
        description="The password of a database snapshot's URL (--data dialect://user@host/db --query ...): kept out "
        "of the URL so no run, tag or log records it; the worker needs it too for a retrain's source check.",
    )
    work_pool: str = "driftloop-process"
    worker_port: int = Field(default=8089, ge=1, le=65535, description="Health endpoint of the local Prefect worker.")
    worker_poll_seconds: float = Field(default=2.0, gt=0, description="How often the local worker asks for runs.")

    # Containers: off by default (deploy=local: the local server follows the champion alias). With deploy=docker
    # the train flow builds a serving image per promoted version and rolls it out behind nginx itself; with
    # deploy=ship-deployment it runs the `ship` deployment for that (the compose stack's Docker work pool: only
    # the ship job's container gets the Docker socket).
    deploy: Literal["local", "docker", "ship-deployment"] = Field(
        default="local",
        description="local: `driftloop serve` follows the alias; docker: image build + rollout in the train flow; "
        "ship-deployment: the same steps as a run of the ship deployment (DRIFTLOOP_SHIP_DEPLOYMENT).",
    )
    ship_deployment: str = Field(
        default="ship-model/ship",
        pattern=r"^[^/]+/[^/]+$",
        description="flow/deployment the train flow runs to ship a promoted version (deploy=ship-deployment).",
    )
    image_prefix: str = Field(
        default="driftloop",
        pattern=r"^[a-z0-9]+([._/-][a-z0-9]+)*(:[0-9]+(/[a-z0-9]+([._/-][a-z0-9]+)*)+)?$",
        description="Serving images are named <prefix>/<model>-serving:v<version>.",
    )
    docker_network: str = Field(default="host", description="Network of builds and serving slots ('host' here).")
    proxy_container: str = Field(default="driftloop-proxy", description="The nginx container in front of the slots.")
    proxy_image: str = Field(default="nginx:1.27", description="Image for the proxy when driftloop starts it.")
    proxy_port: int = Field(default=8080, ge=1, le=65535, description="Where nginx serves the model.")
    proxy_config_dir: Path | None = Field(
        default=None, description="Directory nginx includes the routing from; default: <home>/proxy."
    )
    slot_ports: Annotated[tuple[int, int], NoDecode] = Field(
        default=(8101, 8102), description="Ports of the blue and green slots, e.g. 8101,8102."
    )
    rollout_strategy: RolloutStrategy = "blue-green"
    canary_steps: Annotated[tuple[int, ...], NoDecode] = Field(
        default=(10, 50, 100), description="Candidate traffic % at each canary step, e.g. 10,50,100."
    )
    canary_bake_seconds: float = Field(default=30.0, ge=0, description="Watch time at each canary step.")
    rollout_ready_timeout: float = Field(default=30.0, gt=0, description="Seconds a candidate has to get ready.")
    rollout_max_error_rate: float = Field(default=0.01, ge=0, le=1, description="Candidate error-rate alarm.")
    rollout_max_p99_ms: float = Field(default=250.0, gt=0, description="Candidate p99 latency alarm (absolute).")
    rollout_max_p99_ratio: float = Field(default=3.0, gt=1, description="Candidate p99 alarm relative to the old.")
    drain_timeout: float = Field(default=30.0, gt=0, description="Seconds to wait for old nginx workers to exit.")

    @field_validator("home", "data_path", "schema_path", "project_file", "model_dir", "proxy_config_dir")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        return None if value is None else value.expanduser().resolve()

    @field_validator("feedback_token", "prefect_api_auth_string", mode="before")
    @classmethod
    def _empty_is_no_token(cls, value: object) -> object:
        return None if value == "" else value  # compose passes an unset variable as ""

    @field_validator("slot_ports", "canary_steps", "serve_models", "drift_opens_episode", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        return [part.strip() for part in value.split(",") if part.strip()] if isinstance(value, str) else value

    @field_validator("serve_models")
    @classmethod
    def _model_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [name for name in value if not MODEL_NAME.fullmatch(name)]
        if bad:
            raise ValueError(f"model names are letters, digits, '_', '.', '-': got {bad}")
        return value

    @property
    def served_model_names(self) -> tuple[str, ...]:
        """The models one server serves: model_name (the default, on the unnamed routes) first, then the others."""
        return tuple(dict.fromkeys((self.model_name, *self.serve_models)))

    @field_validator("slot_ports")
    @classmethod
    def _two_ports(cls, value: tuple[int, int]) -> tuple[int, int]:
        if value[0] == value[1] or not all(1 <= port <= 65535 for port in value):
            raise ValueError(f"need two different ports in 1..65535, got {value}")
        return value

    @field_validator("canary_steps")
    @classmethod
    def _rising_percentages(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or list(value) != sorted(set(value)) or value[0] <= 0 or value[-1] != 100:
            raise ValueError(f"need rising percentages in 1..100 ending at 100, got {value}")
        return value

    @property
    def uses_local_prefect(self) -> bool:
        """True when driftloop owns the Prefect server (no PREFECT_API_URL given)."""
        return self.prefect_api_url is None

    @property
    def serves_from_containers(self) -> bool:
        """The champion is the version the containers serve: it moves only with a rollout."""
        return self.deploy != "local"

    @property
    def uses_local_mlflow(self) -> bool:
        """True when MLflow is a SQLite file (the embedded store): artifacts then go under home."""
        return self.tracking_uri.startswith("sqlite:")

    @property
    def prefect_home(self) -> Path:
        return self.home / "prefect"

    @property
    def run_dir(self) -> Path:
        """Pid files and logs of the local services."""
        return self.home / "run"

    @property
    def mlflow_db(self) -> Path:
        return self.home / "mlflow.db"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.home / "mlartifacts"

    @property
    def proxy_dir(self) -> Path:
        return self.proxy_config_dir or self.home / "proxy"

    @property
    def predictions_url(self) -> str:
        return self.prediction_log_url or f"sqlite:///{self.home / 'predictions.db'}"

    @property
    def serve_url(self) -> str:
        return f"http://{self.serve_host}:{self.serve_port}"

    @property
    def tracking_uri(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{self.mlflow_db}"

    @property
    def prefect_api(self) -> str:
        return self.prefect_api_url or f"http://{self.prefect_host}:{self.prefect_port}/api"

    @property
    def prefect_ui(self) -> str:
        return self.prefect_api.removesuffix("/").removesuffix("/api")

    @property
    def mlflow_ui(self) -> str:
        if self.mlflow_ui_url:
            return self.mlflow_ui_url.rstrip("/")
        if self.mlflow_tracking_uri and self.mlflow_tracking_uri.startswith("http"):
            return self.mlflow_tracking_uri.rstrip("/")
        return f"http://127.0.0.1:{self.mlflow_ui_port}"

    def process_env(self) -> dict[str, str]:
        """Environment for a child process (Prefect, MLflow, a worker's flow runs) so it sees these settings.

        Every driftloop setting is passed on, so a flow run started by the worker behaves like the CLI that
        started the worker (same stores, same thresholds); prefect.yaml's schedule reads DRIFTLOOP_DRIFT_CRON.
        """
        env = dict(TELEMETRY_OFF)
        env["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"  # progress bars garble flow logs
        env["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] = str(FLOW_HEARTBEAT_SECONDS)
        exclude = {"mlflow_tracking_uri", "prefect_api_url", "prefect_api_auth_string"}
        for name, value in self.model_dump(exclude=exclude).items():
            if value is not None:
                env[f"DRIFTLOOP_{name.upper()}"] = _env_value(value)
        env["PREFECT_API_URL"] = self.prefect_api
        if self.prefect_api_auth_string is not None:
            env["PREFECT_API_AUTH_STRING"] = self.prefect_api_auth_string.get_secret_value()
        env["MLFLOW_TRACKING_URI"] = self.tracking_uri
        if self.uses_local_prefect:
            env["PREFECT_HOME"] = str(self.prefect_home)
            env["PREFECT_UI_API_URL"] = self.prefect_api
        return env


def secret_text(secret: SecretStr | None) -> str | None:
    """A secret setting's plain text, for the one call that hands it to a driver; None when it is unset or empty."""
    return secret.get_secret_value() if secret else None


def _env_value(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    if isinstance(value, SecretStr):
        return value.get_secret_value()  # a child process (the worker's flow runs) needs the secret itself
    return str(value)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    return Settings()
