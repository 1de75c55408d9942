"""The control planes with authentication on, as the compose stack runs them: real servers, real HTTP, the real CLI.

MLflow runs its basic-auth app with the stack's own configuration (deployments/project/mlflow-basic-auth.ini) and
the stack's account set-up (io/mlflow_accounts.py, run as the entrypoint's ``mlflow-accounts`` role runs it);
Prefect runs with an API auth string, started the way ``driftloop up`` starts it. The loop trains and promotes
through both with its own credentials; anonymous callers and the read-only account cannot move the champion, tag
a version, send an event or create a flow run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from driftloop.io import services
from driftloop.io.mlflow_accounts import LOOP_ACCOUNT, READER_ACCOUNT
from driftloop.settings import BUNDLED_DATA, TELEMETRY_OFF, Settings
from tests.support import prefect_db
from tests.support.cli import Driftloop, PrefectServer, make_driftloop
from tests.support.host import VENV_BIN, free_port
from tests.support.stack import forged_drift_event

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
AUTH_INI = ROOT / "deployments" / "project" / "mlflow-basic-auth.ini"
MODEL = "guarded"


@dataclass(frozen=True)
class AuthenticatedMlflow:
    uri: str
    passwords: dict[str, str]  # admin, the loop's and the reader's

    def api(self, path: str) -> str:
        return f"{self.uri}/api/2.0/mlflow/{path}"

    def credentials(self, username: str) -> tuple[str, str]:
        return username, self.passwords[username]

    def env(self, username: str | None) -> dict[str, str]:
        """A process's MLflow variables as ``username`` (None: anonymous)."""
        env = {"MLFLOW_TRACKING_URI": self.uri}
        if username is not None:
            env |= {"MLFLOW_TRACKING_USERNAME": username, "MLFLOW_TRACKING_PASSWORD": self.passwords[username]}
        return env


def _stack_auth_config(directory: Path) -> Path:
    """The stack's auth configuration, its user store moved into ``directory``."""
    lines = [
        f"database_uri = sqlite:///{directory / 'basic_auth.db'}" if line.startswith("database_uri") else line
        for line in AUTH_INI.read_text().splitlines()
    ]
    assert any(line.startswith("database_uri = sqlite:///") for line in lines)
    path = directory / "basic_auth.ini"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def mlflow_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthenticatedMlflow]:
    root = tmp_path_factory.mktemp("mlflow-auth")
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    token = uuid.uuid4().hex
    passwords = {"admin": f"admin-{token}", LOOP_ACCOUNT: f"loop-{token}", READER_ACCOUNT: f"reader-{token}"}
    spec = services.ServiceSpec(
        name="mlflow-auth",
        argv=(
            str(VENV_BIN / "mlflow"),
            "server",
            "--app-name",
            "basic-auth",
            "--backend-store-uri",
            f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination",
            str(root / "artifacts"),
            "--serve-artifacts",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ),
        health_url=f"{uri}/health",
        listen_url=uri,
        env={
            **TELEMETRY_OFF,
            "MLFLOW_AUTH_CONFIG_PATH": str(_stack_auth_config(root)),
            "MLFLOW_AUTH_ADMIN_PASSWORD": passwords["admin"],
            "MLFLOW_FLASK_SERVER_SECRET_KEY": token,
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        },
        run_dir=root / "run",
        cwd=root,
    )
    services.start_all([spec], timeout=120)
    server = AuthenticatedMlflow(uri, passwords)
    try:
        # A model registered before authentication was turned on (an upgraded stack): the loop must own it too.
        created = httpx.post(
            server.api("registered-models/create"), json={"name": "legacy"}, auth=server.credentials("admin")
        )
        assert created.status_code == 200, created.text
        accounts = subprocess.run(
            [sys.executable, "-c", "from driftloop.io.mlflow_accounts import main; main()"],
            env={
                **os.environ,
                **server.env("admin"),
                "MLFLOW_LOOP_PASSWORD": passwords[LOOP_ACCOUNT],
                "MLFLOW_READER_PASSWORD": passwords[READER_ACCOUNT],
            },
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert accounts.returncode == 0, accounts.stderr
        assert f"created {LOOP_ACCOUNT}, {READER_ACCOUNT}" in accounts.stdout
        yield server
    finally:
        services.stop(spec)


@pytest.fixture(scope="module")
def prefect_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PrefectServer, str]]:
    """A Prefect server started as `driftloop up` starts it, with an auth string."""
    home = tmp_path_factory.mktemp("prefect-auth")
    auth_string = f"ops:{uuid.uuid4().hex}"
    settings = Settings(home=home, prefect_port=free_port(), prefect_api_auth_string=auth_string)
    prefect_db.seed(settings.prefect_home)
    spec = services.prefect_server_spec(settings)
    assert spec.env["PREFECT_SERVER_API_AUTH_STRING"] == auth_string
    services.start_all([spec], timeout=180)
    try:
        yield PrefectServer(api_url=settings.prefect_api, home=home), auth_string
    finally:
        services.stop(spec)


@pytest.fixture(scope="module")
def loop(
    mlflow_auth: AuthenticatedMlflow, prefect_auth: tuple[PrefectServer, str], tmp_path_factory: pytest.TempPathFactory
) -> Driftloop:
    """The loop's CLI with its credentials for both; it trains, registers and promotes v1."""
    prefect, auth_string = prefect_auth
    dl = make_driftloop(tmp_path_factory.mktemp("loop"), prefect, model_name=MODEL)
    dl.env.update(mlflow_auth.env(LOOP_ACCOUNT) | {"PREFECT_API_AUTH_STRING": auth_string})
    dl.run("train", "--data", str(BUNDLED_DATA), timeout=900)
    return dl


def as_account(dl: Driftloop, mlflow: AuthenticatedMlflow, username: str | None) -> Driftloop:
    env = {key: value for key, value in dl.env.items() if not key.startswith("MLFLOW_TRACKING_")}
    return Driftloop(home=dl.home, env=env | mlflow.env(username))


def champion(mlflow: AuthenticatedMlflow) -> str:
    answer = httpx.get(
        mlflow.api("registered-models/alias"),
        params={"name": MODEL, "alias": "champion"},
        auth=mlflow.credentials("admin"),
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["model_version"]["version"])


def test_the_loop_trains_and_promotes_through_both_authenticated_control_planes(
    loop: Driftloop, mlflow_auth: AuthenticatedMlflow
) -> None:
    assert champion(mlflow_auth) == "1"
    history = as_account(loop, mlflow_auth, READER_ACCOUNT).run("history")
    assert "promote" in history.stdout


@pytest.mark.parametrize("who", [None, READER_ACCOUNT])
def test_nobody_but_the_loop_moves_the_champion_or_tags_a_version(
    loop: Driftloop, mlflow_auth: AuthenticatedMlflow, who: str | None
) -> None:
    expected = 401 if who is None else 403
    auth = mlflow_auth.credentials(who) if who else None
    before = champion(mlflow_auth)
    moved = httpx.post(
        mlflow_auth.api("registered-models/alias"),
        json={"name": MODEL, "alias": "champion", "version": before},
        auth=auth,
    )
    tagged = httpx.post(
        mlflow_auth.api("model-versions/set-tag"),
        json={"name": MODEL, "version": before, "key": "driftloop.parity", "value": "passed"},
        auth=auth,
    )
    assert (moved.status_code, tagged.status_code) == (expected, expected), moved.text + tagged.text
    # The same calls with the loop's account go through: the refusals above are the credentials', not the calls'.
    allowed = httpx.post(
        mlflow_auth.api("model-versions/set-tag"),
        json={"name": MODEL, "version": before, "key": "driftloop.auth-test", "value": "loop"},
        auth=mlflow_auth.credentials(LOOP_ACCOUNT),
    )
    assert allowed.status_code == 200, allowed.text
    assert champion(mlflow_auth) == before


def test_the_readers_pin_is_one_line_and_records_nothing(loop: Driftloop, mlflow_auth: AuthenticatedMlflow) -> None:
    before = champion(mlflow_auth)
    reader = as_account(loop, mlflow_auth, READER_ACCOUNT)
    result = reader.run("pin", before, "--reason", "reader tries", check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.startswith("error: "), result.stderr
    assert f"the account {READER_ACCOUNT!r} has no permission for this" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert champion(mlflow_auth) == before
    # A recorded pin would show its reason; "pin" alone is in Prefect's run names (jumping-porcupine, spinning-...).
    history = as_account(loop, mlflow_auth, LOOP_ACCOUNT).run("history").stdout
    assert "reader tries" not in history, history
    assert "pinned at" not in history, history


def test_anonymous_cli_is_one_line_naming_the_credentials(loop: Driftloop, mlflow_auth: AuthenticatedMlflow) -> None:
    result = as_account(loop, mlflow_auth, None).run("models", check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.startswith("error: "), result.stderr
    assert "MLFLOW_TRACKING_USERNAME" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_loop_account_owns_what_existed_before_authentication(mlflow_auth: AuthenticatedMlflow) -> None:
    def tag_legacy(username: str) -> int:
        answer = httpx.post(
            mlflow_auth.api("registered-models/set-tag"),
            json={"name": "legacy", "key": "touched-by", "value": username},
            auth=mlflow_auth.credentials(username),
        )
        return answer.status_code

    assert tag_legacy(LOOP_ACCOUNT) == 200
    assert tag_legacy(READER_ACCOUNT) == 403


def test_anonymous_callers_cannot_send_events_or_create_flow_runs(prefect_auth: tuple[PrefectServer, str]) -> None:
    prefect, auth_string = prefect_auth
    user, _, password = auth_string.partition(":")
    drift_event = forged_drift_event(MODEL)
    with httpx.Client(base_url=prefect.api_url, timeout=30) as anonymous:
        assert anonymous.get("/health").status_code == 200  # the probe stays open
        assert anonymous.post("/events", json=[drift_event]).status_code == 401
        assert anonymous.post("/flow_runs/filter", json={}).status_code == 401
        assert anonymous.post("/deployments/filter", json={}).status_code == 401
        wrong = anonymous.post("/flow_runs/filter", json={}, auth=(user, "not-the-password"))
        assert wrong.status_code == 401
    with httpx.Client(base_url=prefect.api_url, timeout=30, auth=(user, password)) as authenticated:
        assert authenticated.post("/flow_runs/filter", json={}).status_code == 200
        assert authenticated.post("/events", json=[drift_event]).status_code in {200, 204}


def test_a_cached_sign_in_never_outlives_a_wrong_or_changed_password(mlflow_auth: AuthenticatedMlflow) -> None:
    # The stack's MLflow keeps a successful password check for a while (mlflow-basic-auth.ini): this server, one
    # worker, runs with that setting.
    ttl = re.search(r"^auth_cache_ttl_seconds = (\d+)$", AUTH_INI.read_text(), re.MULTILINE)
    assert ttl is not None, "the stack's MLflow caches no sign-in: nothing to test here"
    assert int(ttl.group(1)) > 0
    admin = mlflow_auth.credentials("admin")
    user, first, second = f"rotating-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex, uuid.uuid4().hex
    created = httpx.post(mlflow_auth.api("users/create"), json={"username": user, "password": first}, auth=admin)
    assert created.status_code == 200, created.text

    def search(password: str) -> int:
        return httpx.get(mlflow_auth.api("registered-models/search"), auth=(user, password)).status_code

    assert search(first) == 200  # now cached
    assert search("not-the-password") == 401
    changed = httpx.patch(
        mlflow_auth.api("users/update-password"), json={"username": user, "password": second}, auth=admin
    )
    assert changed.status_code == 200, changed.text
    assert search(first) == 401
    assert search(second) == 200
    deleted = httpx.request("DELETE", mlflow_auth.api("users/delete"), json={"username": user}, auth=admin)
    assert deleted.status_code == 200, deleted.text
    assert search(second) == 401
