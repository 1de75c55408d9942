"""Routing values and the nginx config they render, checked by the real `nginx -t` where nginx is installed."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from driftloop.deploy.routing import (
    PROXY_HEALTH,
    ProxyLimits,
    Routing,
    SlotRoute,
    idle_slot,
    other_slot,
    render_nginx_config,
)
from driftloop.errors import DeployError

BLUE = SlotRoute("blue", "127.0.0.1:18101", 100, "1", "driftloop/churn-serving:v1", "dl-churn-blue")
GREEN = SlotRoute("green", "127.0.0.1:18102", 0, "2", "driftloop/churn-serving:v2", "dl-churn-green")


def nginx_binary() -> str:
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).is_file()), None)
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("nginx is required in CI to validate the rendered config (apt-get install nginx-light)")
        pytest.skip("nginx is not installed: the rendered config cannot be checked with `nginx -t`")
    return found


def nginx_test(config: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`nginx -t` on ``config`` included in the http block of a minimal main config, all under ``tmp_path``."""
    (tmp_path / "conf.d").mkdir(exist_ok=True)
    (tmp_path / "logs").mkdir(exist_ok=True)
    (tmp_path / "conf.d" / "driftloop.conf").write_text(config)
    main = tmp_path / "nginx.conf"
    main.write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/logs/error.log;\nevents {{}}\n"
        f"http {{\n  access_log off;\n  include {tmp_path}/conf.d/*.conf;\n}}\n"
    )
    return subprocess.run(
        [nginx_binary(), "-t", "-p", str(tmp_path), "-c", str(main), "-e", str(tmp_path / "logs" / "error.log")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_json_round_trip_keeps_every_field() -> None:
    routing = Routing("churn", (BLUE, GREEN), "2026-11-25T10:00:00+00:00")
    again = Routing.from_json(routing.to_json())
    assert again == routing
    assert again.route("green") == GREEN


def test_weights_must_sum_to_100_or_nothing() -> None:
    with pytest.raises(DeployError, match="sum to 150"):
        Routing("churn", (BLUE, SlotRoute("green", "127.0.0.1:18102", 50)))
    assert Routing("churn").live() == []
    assert Routing("churn", (SlotRoute("blue", "127.0.0.1:1", 0),)).primary() is None


@pytest.mark.parametrize(
    ("route", "problem"),
    [
        ({"slot": "red", "address": "127.0.0.1:1"}, "unknown slot"),
        ({"slot": "blue", "address": "127.0.0.1:1", "weight": 101}, "outside 0..100"),
        ({"slot": "blue", "address": "localhost"}, "not host:port"),
        ({"slot": "blue", "address": "127.0.0.1:1; evil"}, "not host:port"),
    ],
)
def test_bad_routes_are_refused(route: dict[str, object], problem: str) -> None:
    with pytest.raises(DeployError, match=problem):
        SlotRoute(**route)  # type: ignore[arg-type]


def test_bad_model_name_and_duplicate_slots_are_refused() -> None:
    with pytest.raises(DeployError, match="model name"):
        Routing("churn'; return 200", ())
    with pytest.raises(DeployError, match="twice"):
        Routing("churn", (BLUE, SlotRoute("blue", "127.0.0.1:2", 0)))


def test_unreadable_json_names_the_problem() -> None:
    with pytest.raises(DeployError, match="unreadable routing"):
        Routing.from_json('{"slots": []}')
    with pytest.raises(DeployError, match="unreadable routing"):
        Routing.from_json("not json")


def test_with_weights_and_with_slot() -> None:
    routing = Routing("churn", (BLUE,)).with_slot(GREEN)
    assert [r.slot for r in routing.slots] == ["blue", "green"]
    split = routing.with_weights({"blue": 90, "green": 10})
    assert split.weights() == {"blue": 90, "green": 10}
    assert split.primary() == split.route("blue")
    switched = split.with_weights({"green": 100})
    assert switched.weights() == {"blue": 0, "green": 100}
    assert [r.slot for r in switched.live()] == ["green"]
    with pytest.raises(DeployError, match="sum to 60"):
        routing.with_weights({"blue": 50, "green": 10})
    with pytest.raises(DeployError, match="no route"):
        Routing("churn", (BLUE,)).with_weights({"green": 100})


def test_idle_and_other_slot() -> None:
    assert idle_slot(None) == "blue"
    assert idle_slot(Routing("churn")) == "blue"
    assert idle_slot(Routing("churn", (BLUE, GREEN))) == "green"
    assert idle_slot(Routing("churn", (BLUE, GREEN)).with_weights({"green": 100})) == "blue"
    assert other_slot("blue") == "green"
    assert other_slot("green") == "blue"


def test_render_weighted_upstream_leaves_weight_zero_out() -> None:
    split = Routing("churn", (BLUE, GREEN)).with_weights({"blue": 90, "green": 10})
    config = render_nginx_config(split, 18080)
    assert "server 127.0.0.1:18101 weight=90" in config
    assert "server 127.0.0.1:18102 weight=10" in config
    assert "listen 18080;" in config
    assert "proxy_next_upstream error timeout http_502 http_503" in config
    assert "proxy_next_upstream_tries 2;" in config
    assert "keepalive 32;" in config
    assert f"location = {PROXY_HEALTH}" in config
    only_blue = render_nginx_config(Routing("churn", (BLUE, GREEN)), 18080)
    assert "18101" in only_blue
    assert "server 127.0.0.1:18102" not in only_blue


def test_render_without_live_slots_answers_503_without_an_upstream() -> None:
    config = render_nginx_config(Routing("churn", (SlotRoute("blue", "127.0.0.1:18101"),)), 18080)
    assert "upstream" not in config
    assert "proxy_pass" not in config
    assert "return 503" in config
    assert "no_route" in config


def test_render_uses_the_limits() -> None:
    limits = ProxyLimits(connect=0.5, read=3, send=4, retry_window=2.5, max_body_bytes=1234)
    config = render_nginx_config(Routing("churn", (BLUE,)), 18080, limits)
    for expected in (
        "proxy_connect_timeout 500ms;",
        "proxy_read_timeout 3000ms;",
        "proxy_send_timeout 4000ms;",
        "proxy_next_upstream_timeout 2500ms;",
        "client_max_body_size 1234;",
    ):
        assert expected in config


def test_render_refuses_a_bad_port() -> None:
    with pytest.raises(DeployError, match="outside 1..65535"):
        render_nginx_config(Routing("churn"), 0)


@pytest.mark.parametrize(
    "routing",
    [
        Routing("churn"),
        Routing("churn", (BLUE,)),
        Routing("churn", (BLUE, GREEN)).with_weights({"blue": 90, "green": 10}),
        Routing("churn", (BLUE, GREEN)).with_weights({"green": 100}),
        Routing("my.model-2", (SlotRoute("green", "127.0.0.1:18102", 100, None, None),)),
    ],
    ids=["empty", "blue", "canary-10", "green", "no-version"],
)
def test_nginx_accepts_every_rendered_config(routing: Routing, tmp_path: Path) -> None:
    result = nginx_test(render_nginx_config(routing, 18080), tmp_path)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_nginx_check_catches_a_broken_config(tmp_path: Path) -> None:
    """The validation above can fail: a config with a typo is refused."""
    broken = render_nginx_config(Routing("churn", (BLUE,)), 18080).replace("proxy_pass", "proxy_passs")
    result = nginx_test(broken, tmp_path)
    assert result.returncode != 0
    assert "proxy_passs" in result.stderr
