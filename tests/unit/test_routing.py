"""Routing values and the nginx config they render, checked by the real `nginx -t` where nginx is installed."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from driftloop.deploy.routing import (
    PROXY_HEALTH,
    ProxyLimits,
    ProxyModels,
    Routing,
    SlotRoute,
    idle_slot,
    other_slot,
    render_nginx_config,
)
from driftloop.errors import DeployError
from tests.support.host import free_port

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
    config = render_nginx_config([split], 18080)
    assert "server 127.0.0.1:18101 weight=90" in config
    assert "server 127.0.0.1:18102 weight=10" in config
    assert "listen 18080;" in config
    assert "proxy_next_upstream error timeout http_502 http_503" in config
    assert "proxy_next_upstream_tries 2;" in config
    assert "keepalive 32;" in config
    assert f"location = {PROXY_HEALTH}" in config
    only_blue = render_nginx_config([Routing("churn", (BLUE, GREEN))], 18080)
    assert "18101" in only_blue
    assert "server 127.0.0.1:18102" not in only_blue


def test_render_without_live_slots_answers_503_without_an_upstream() -> None:
    config = render_nginx_config([Routing("churn", (SlotRoute("blue", "127.0.0.1:18101"),))], 18080)
    assert "upstream" not in config
    assert "proxy_pass" not in config
    assert "return 503" in config
    assert "no_route" in config


def test_render_uses_the_limits() -> None:
    limits = ProxyLimits(
        connect=0.5, read=3, send=4, retry_window=2.5, max_body_bytes=1234, client_header=1.5, client_body=7
    )
    config = render_nginx_config([Routing("churn", (BLUE,))], 18080, limits)
    for expected in (
        "proxy_connect_timeout 500ms;",
        "proxy_read_timeout 3000ms;",
        "proxy_send_timeout 4000ms;",
        "proxy_next_upstream_timeout 2500ms;",
        "client_max_body_size 1234;",
        "error_page 413 @body_too_large;",
        """return 413 '{"detail": "request body exceeds the limit of 1234 bytes", "reason": "body_too_large"}';""",
        "client_header_timeout 1500ms;",
        "client_body_timeout 7000ms;",
    ):
        assert expected in config


def test_render_refuses_a_bad_port() -> None:
    with pytest.raises(DeployError, match="outside 1..65535"):
        render_nginx_config([Routing("churn")], 0)


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
    result = nginx_test(render_nginx_config([routing], 18080), tmp_path)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_nginx_check_catches_a_broken_config(tmp_path: Path) -> None:
    """The validation above can fail: a config with a typo is refused."""
    broken = render_nginx_config([Routing("churn", (BLUE,))], 18080).replace("proxy_pass", "proxy_passs")
    result = nginx_test(broken, tmp_path)
    assert result.returncode != 0
    assert "proxy_passs" in result.stderr


# ------------------------------------------------------------------------------------------------- several models

WINE_BLUE = SlotRoute("blue", "127.0.0.1:18103", 100, "4", "driftloop/wine-serving:v4", "dl-wine-blue")


def test_each_model_gets_its_named_locations_and_the_default_the_unnamed_ones() -> None:
    routings = [Routing("wine", (WINE_BLUE,)), Routing("churn", (BLUE, GREEN)), Routing("houses")]
    config = render_nginx_config(routings, 18080, default="churn")
    upstreams = dict(re.findall(r"upstream (\S+) \{\n(?:  #[^\n]*\n)?  server (\S+)", config))
    assert sorted(upstreams.values()) == ["127.0.0.1:18101", "127.0.0.1:18103"]  # houses has nothing live
    wine, churn = (name for name, address in sorted(upstreams.items(), key=lambda item: item[1], reverse=True))
    for prefix, upstream in (("/models/wine", wine), ("/v2/models/wine", wine), ("/models/churn", churn)):
        for location in (f"location = {prefix} {{", f"location {prefix}/ {{"):
            body = config.split(location, 1)[1].split("}", 1)[0]
            assert f"proxy_pass http://{upstream};" in body, location
    unnamed = config.split("location / {", 1)[1].split("}", 1)[0]
    assert f"proxy_pass http://{churn};" in unnamed
    houses = config.split("location /models/houses/ {", 1)[1].split("}", 1)[0]
    assert "return 503" in houses
    assert "no version of model houses is rolled out yet" in houses


def test_the_default_without_a_live_slot_answers_503_naming_it() -> None:
    config = render_nginx_config([Routing("wine", (WINE_BLUE,)), Routing("churn")], 18080, default="churn")
    unnamed = config.split("location / {", 1)[1].split("}", 1)[0]
    assert "no version of model churn is rolled out yet" in unnamed
    assert "proxy_pass" not in unnamed
    nothing = render_nginx_config([], 18080)
    assert "no model version is rolled out yet" in nothing.split("location / {", 1)[1]


def test_a_model_routed_twice_is_refused() -> None:
    with pytest.raises(DeployError, match="routed twice"):
        render_nginx_config([Routing("churn", (BLUE,)), Routing("churn")], 18080)


def test_nginx_accepts_several_models(tmp_path: Path) -> None:
    routings = [Routing("wine", (WINE_BLUE,)), Routing("churn", (BLUE, GREEN)).with_weights({"blue": 90, "green": 10})]
    result = nginx_test(render_nginx_config([*routings, Routing("my.model-2")], 18080, default="my.model-2"), tmp_path)
    assert result.returncode == 0, result.stderr


class _Backend(ThreadingHTTPServer):
    """A stand-in slot that answers every request with its own name and the path it was asked for."""

    def __init__(self, name: str) -> None:
        self.name = name

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                self._answer()

            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("content-length") or 0))
                self._answer()

            def _answer(self) -> None:
                body = json.dumps({"backend": name, "path": self.path}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"


def test_a_real_nginx_sends_each_model_to_its_own_slots(tmp_path: Path) -> None:
    """Rendered config, real nginx: named routes reach their model's slot, unnamed ones the default's."""
    binary = nginx_binary()
    backends = {name: _Backend(name) for name in ("churn", "wine")}
    routings = [Routing(name, (SlotRoute("blue", b.address, 100, "1"),)) for name, b in backends.items()]
    port = free_port()
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "logs").mkdir()
    (tmp_path / "conf.d" / "driftloop.conf").write_text(
        render_nginx_config([*routings, Routing("houses")], port, default="churn")
    )
    main = tmp_path / "nginx.conf"
    main.write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/logs/error.log;\ndaemon off;\nevents {{}}\n"
        f"http {{\n  access_log off;\n  include {tmp_path}/conf.d/*.conf;\n}}\n"
    )
    nginx = subprocess.Popen(
        [binary, "-p", str(tmp_path), "-c", str(main), "-e", str(tmp_path / "logs" / "error.log")],
        stderr=subprocess.DEVNULL,  # its log is logs/error.log
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 10
        while True:
            try:
                httpx.get(url + PROXY_HEALTH, timeout=1)
                break
            except httpx.HTTPError:
                assert nginx.poll() is None, (tmp_path / "logs" / "error.log").read_text()
                assert time.monotonic() < deadline, "nginx did not answer within 10 s"
                time.sleep(0.05)
        expected = {
            "/predict": ("churn", 200),
            "/models/wine/predict": ("wine", 200),
            "/models/wine": ("wine", 200),
            "/v2/models/wine/infer": ("wine", 200),
            "/models/churn/invocations": ("churn", 200),
        }
        for path, (backend, code) in expected.items():
            answer = httpx.post(url + path, json={}, timeout=5)
            assert (answer.status_code, answer.json().get("backend")) == (code, backend), path
            assert answer.json()["path"] == path  # the slot sees the path unchanged: it serves the named routes
        for path in ("/models/wineries/predict", "/models/nosuch", "/models/"):
            nobody = httpx.post(url + path, json={}, timeout=5)
            assert nobody.status_code == 404, path
            assert nobody.json()["reason"] == "unknown_model"
            assert "behind this proxy are churn, houses, wine" in nobody.json()["detail"]
        v2 = httpx.post(url + "/v2/models/nosuch/infer", json={}, timeout=5)
        assert (v2.status_code, v2.json()["error"].startswith("unknown model")) == (404, True)
        assert httpx.get(url + "/models", timeout=5).json()["backend"] == "churn"  # the list: the default slot's
        houses = httpx.post(url + "/models/houses/predict", json={}, timeout=5)
        assert houses.status_code == 503
        assert houses.json() == {"detail": "no version of model houses is rolled out yet", "reason": "no_route"}
    finally:
        nginx.terminate()
        nginx.wait(timeout=10)
        for backend in backends.values():
            backend.shutdown()
            backend.server_close()


def test_a_new_model_takes_the_preferred_ports_or_the_next_free_pair() -> None:
    never = lambda port: False  # noqa: E731
    first = ProxyModels().admit("churn", (8101, 8102), never)
    assert first == ProxyModels("churn", {"churn": (8101, 8102)})
    second = first.admit("wine", (8101, 8102), never)
    assert second.ports["wine"] == (8103, 8104)
    assert second.default == "churn"  # the first model admitted stays the default
    taken = {8105, 8106}
    third = second.admit("houses", (8101, 8102), lambda port: port in taken)
    assert third.ports["houses"] == (8107, 8108)
    assert third.admit("wine", (9001, 9002), never).ports["wine"] == (8103, 8104)  # kept once given
    own = third.admit("fraud", (9001, 9002), never)
    assert own.ports["fraud"] == (9001, 9002)  # a free preferred pair is taken as it is
    assert own.with_default("wine").default == "wine"
    assert ProxyModels.from_json(own.to_json()) == own


def test_unreadable_proxy_models_name_the_problem() -> None:
    with pytest.raises(DeployError, match="unreadable proxy models"):
        ProxyModels.from_json('{"ports": {"churn": [8101]}}')
