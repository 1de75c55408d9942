"""Settings: list-valued settings read as comma-separated values, survive process_env, and are checked."""

from __future__ import annotations

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
