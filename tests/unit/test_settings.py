"""Settings: list-valued settings read as comma-separated values, survive process_env, and are checked."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from driftloop.settings import Settings


def test_comma_separated_values_round_trip_through_a_child_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFTLOOP_CANARY_STEPS", "5, 25,100")
    monkeypatch.setenv("DRIFTLOOP_SLOT_PORTS", "9001,9002")
    settings = Settings()
    assert settings.canary_steps == (5, 25, 100)
    assert settings.slot_ports == (9001, 9002)

    env = settings.process_env()
    assert env["DRIFTLOOP_CANARY_STEPS"] == "5,25,100"
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    explicit = {"mlflow_tracking_uri", "prefect_api_url"}  # process_env spells out the defaults' URLs
    assert Settings().model_dump(exclude=explicit) == settings.model_dump(exclude=explicit)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("DRIFTLOOP_CANARY_STEPS", "50,10,100", "rising percentages"),
        ("DRIFTLOOP_CANARY_STEPS", "10,50", "ending at 100"),
        ("DRIFTLOOP_CANARY_STEPS", "0,100", "rising percentages"),
        ("DRIFTLOOP_SLOT_PORTS", "8101,8101", "two different ports"),
        ("DRIFTLOOP_SLOT_PORTS", "8101", "slot_ports"),
        ("DRIFTLOOP_DEPLOY", "kubernetes", "deploy"),
        ("DRIFTLOOP_IMAGE_PREFIX", "Driftloop", "image_prefix"),
    ],
)
def test_bad_container_settings_name_the_problem(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=message):
        Settings()


def test_proxy_directory_defaults_under_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DRIFTLOOP_HOME", str(tmp_path))
    assert Settings().proxy_dir == tmp_path / "proxy"
    monkeypatch.setenv("DRIFTLOOP_PROXY_CONFIG_DIR", str(tmp_path / "nginx"))
    assert Settings().proxy_dir == tmp_path / "nginx"


@pytest.mark.parametrize("prefix", ["driftloop", "registry.example.com/ml", "localhost:5000/ml/team"])
def test_image_prefix_accepts_registry_hosts_with_ports(monkeypatch: pytest.MonkeyPatch, prefix: str) -> None:
    monkeypatch.setenv("DRIFTLOOP_IMAGE_PREFIX", prefix)
    assert Settings().image_prefix == prefix


def test_pointing_mlflow_at_a_store_does_not_change_the_settings_read_afterwards(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # mlflow.set_tracking_uri also writes MLFLOW_TRACKING_URI into os.environ, which Settings reads: a process
    # that trained into one home and then read another home's settings used the first home's registry.
    import mlflow

    from driftloop.io.tracking import use_tracking_uri

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    monkeypatch.delenv("DRIFTLOOP_MLFLOW_TRACKING_URI", raising=False)
    other_store = f"sqlite:///{tmp_path / 'other' / 'mlflow.db'}"
    try:
        use_tracking_uri(other_store)
        assert mlflow.get_tracking_uri() == other_store
        assert "MLFLOW_TRACKING_URI" not in os.environ
        assert "MLFLOW_REGISTRY_URI" not in os.environ
        home = tmp_path / "home"
        assert Settings(home=home).tracking_uri == f"sqlite:///{home / 'mlflow.db'}"

        monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")  # the user's own: kept
        use_tracking_uri(other_store)
        assert os.environ["MLFLOW_TRACKING_URI"] == "http://mlflow.example:5000"
    finally:
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
