"""``/docs`` renders in a real headless Chromium with no route to the internet: its assets come from the server.

Chromium resolves no host name but 127.0.0.1 (``--host-resolver-rules``), so a page that needs a CDN stays blank;
the control case, FastAPI's own page for the same OpenAPI document, shows that it does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.openapi.docs import get_swagger_ui_html

from tests.support.serving import ServerProcess, server_process

OFFLINE = "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is required in CI to render /docs (apt-get install chromium)")
        pytest.skip("chromium is not installed: /docs cannot be rendered (apt-get install chromium)")
    return found


def rendered(url: str, profile: Path) -> str:
    """The page's DOM once its scripts have run, in a Chromium that can reach nothing but 127.0.0.1."""
    result = subprocess.run(
        [
            chromium(),
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={profile}",
            OFFLINE,
            "--virtual-time-budget=15000",
            "--dump-dom",
            url,
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, bundle_dir: Path) -> Iterator[ServerProcess]:
    chromium()  # skip (or fail in CI) before starting anything
    with server_process(tmp_path_factory.mktemp("docs"), bundle_dir) as running:
        yield running


def test_the_docs_page_renders_every_route_offline(server: ServerProcess, tmp_path: Path) -> None:
    page = rendered(server.url + "/docs", tmp_path / "profile")
    operations = page.count('class="opblock opblock-')
    paths = httpx.get(server.url + "/openapi.json", timeout=10).json()["paths"]
    assert operations == sum(len(methods) for methods in paths.values()), page[:2000]
    assert "driftloop model server" in page
    assert "/models/{name}/predict" in page


def test_the_page_loads_nothing_from_elsewhere(server: ServerProcess) -> None:
    html = httpx.get(server.url + "/docs", timeout=10).text
    assert "http" not in html.replace(server.url, "")  # every asset is this server's own path
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "favicon.png"):
        assert httpx.get(f"{server.url}/docs-assets/{asset}", timeout=10).status_code == 200
    assert httpx.get(server.url + "/redoc", timeout=10).status_code == 404  # ReDoc's page needs a CDN: off


def test_the_check_can_fail_a_page_that_needs_a_cdn(server: ServerProcess, tmp_path: Path) -> None:
    """FastAPI's own page for the same document, with its CDN assets: blank here."""
    cdn_page = tmp_path / "cdn-docs.html"
    cdn_page.write_bytes(get_swagger_ui_html(openapi_url=server.url + "/openapi.json", title="cdn").body)
    page = rendered(cdn_page.as_uri(), tmp_path / "profile")
    assert 'class="opblock opblock-' not in page
