"""The proxy directory's files, shared by every model behind one nginx: no Docker needed to read and admit."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from driftloop.deploy import proxy
from driftloop.deploy.routing import Routing, SlotRoute
from driftloop.errors import DeployError
from driftloop.settings import Settings


def settings_for(tmp_path: Path, model: str, **values: object) -> Settings:
    return Settings(home=tmp_path, model_name=model, slot_ports=(18101, 18102), **values)  # type: ignore[arg-type]


def never_in_use(port: int) -> bool:
    return False


def test_models_get_their_own_ports_once_and_the_first_is_the_default(tmp_path: Path) -> None:
    assert proxy.admit(settings_for(tmp_path, "churn"), never_in_use) == proxy.Admitted((18101, 18102))
    assert proxy.admit(settings_for(tmp_path, "wine"), never_in_use) == proxy.Admitted((18103, 18104))
    assert proxy.admit(settings_for(tmp_path, "churn"), never_in_use).ports == (18101, 18102)
    models = proxy.read_models(settings_for(tmp_path, "churn"))
    assert models.default == "churn"
    assert dict(models.ports) == {"churn": (18101, 18102), "wine": (18103, 18104)}
    # The project file names wine first: the default moves once, and says so once.
    moved = proxy.admit(settings_for(tmp_path, "churn"), never_in_use, default="wine")
    assert moved == proxy.Admitted((18101, 18102), default_moved_to="wine")
    assert proxy.read_models(settings_for(tmp_path, "churn")).default == "wine"
    assert proxy.admit(settings_for(tmp_path, "wine"), never_in_use, default="wine").default_moved_to is None


def test_admitting_at_once_never_gives_two_models_the_same_ports(tmp_path: Path) -> None:
    names = [f"model{i}" for i in range(8)]
    threads = [threading.Thread(target=proxy.admit, args=(settings_for(tmp_path, n), never_in_use)) for n in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ports = proxy.read_models(settings_for(tmp_path, "model0")).ports
    assert sorted(ports) == names
    every_port = [port for pair in ports.values() for port in pair]
    assert len(set(every_port)) == 16


def test_routings_are_read_per_model_and_the_single_model_file_still_counts(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, "churn")
    legacy = Routing("churn", (SlotRoute("blue", "127.0.0.1:18101", 100, "3"),))
    settings.proxy_dir.mkdir(parents=True)
    (settings.proxy_dir / proxy.LEGACY_ROUTING_FILE).write_text(legacy.to_json())
    wine = Routing("wine", (SlotRoute("green", "127.0.0.1:18104", 100, "2"),))
    proxy.write_atomically(proxy.routing_path(settings, "wine"), wine.to_json())
    assert proxy.read_routing(settings) == legacy
    assert proxy.read_routing(settings, "wine") == wine
    assert proxy.read_routing(settings, "houses") is None
    assert proxy.read_routings(settings) == {"churn": legacy, "wine": wine}


def test_an_unreadable_models_file_is_named(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, "churn")
    proxy.write_atomically(settings.proxy_dir / proxy.MODELS_FILE, json.dumps({"ports": {"churn": "x"}}))
    with pytest.raises(DeployError, match="unreadable proxy models"):
        proxy.admit(settings, never_in_use)


def test_a_held_lock_is_waited_for_then_named(tmp_path: Path) -> None:
    lock = tmp_path / ".lock"
    held = pytest.raises(DeployError, match=r"the proxy's files stayed locked for 0s")
    with proxy.locked(lock, 1, "the proxy's files"), held, proxy.locked(lock, 0.2, "the proxy's files"):
        pass
    with proxy.locked(lock, 0.2, "the proxy's files"):  # free again once released
        pass
