"""The web page's contract: it calls only documented API endpoints, and ships hls.js intact."""

from __future__ import annotations

import asyncio
import hashlib
import re
from pathlib import Path

import httpx
from videoflix_api.embedded.app import EmbeddedConfig, build
from videoflix_api.web import STATIC_DIR

APP_JS = STATIC_DIR / "app.js"
HLS_DIR = STATIC_DIR / "vendor" / "hls.js"


def _page_endpoints() -> dict[str, str]:
    """The `API` table at the top of app.js: name → path template with `{}` for parameters."""
    source = APP_JS.read_text()
    table = source[source.index("const API = {") : source.index("};", source.index("const API"))]
    endpoints = {}
    for name, path in re.findall(r"^\s+(\w+):[^\"`]*[\"`]([^\"`?]+)", table, re.MULTILINE):
        endpoints[name] = "/" + re.sub(r"\$\{[^}]+\}", "{}", path)
    return endpoints


def test_the_page_only_calls_documented_endpoints(tmp_path: Path) -> None:
    app = build(EmbeddedConfig(data_dir=tmp_path)).app
    documented = {re.sub(r"\{[^}]+\}", "{}", p) for p in app.openapi()["paths"]}
    endpoints = _page_endpoints()
    assert endpoints["videoUrl"] == "/content/video-url/{}/"  # templates are read as templates
    assert len(endpoints) >= 12, endpoints  # the table was found and read
    missing = {name: path for name, path in endpoints.items() if path not in documented}
    assert missing == {}, f"app.js calls endpoints the API does not document: {missing}"


def test_page_and_assets_are_served_with_a_strict_policy(tmp_path: Path) -> None:
    app = build(EmbeddedConfig(data_dir=tmp_path)).app

    async def check() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            for path in ("/", "/login", "/reset-password"):
                page = await client.get(path)
                assert page.status_code == 200
                assert page.headers["content-type"].startswith("text/html")
                policy = page.headers["content-security-policy"]
                assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
            script = await client.get("/static/vendor/hls.js/hls.min.js")
            assert script.status_code == 200
            assert script.headers["x-content-type-options"] == "nosniff"
            assert (await client.get("/static/../secret_key")).status_code == 404

    asyncio.run(check())


def test_vendored_hls_js_is_the_recorded_release() -> None:
    readme = (HLS_DIR / "README.md").read_text()
    [recorded] = re.findall(r"`([0-9a-f]{64})`", readme)
    assert hashlib.sha256((HLS_DIR / "hls.min.js").read_bytes()).hexdigest() == recorded
    assert "Apache License" in (HLS_DIR / "LICENSE").read_text()


def test_the_angular_dev_server_may_call_with_credentials(tmp_path: Path) -> None:
    """`ng serve` on :4200 against the embedded backend: CORS with credentials and X-Retry."""
    app = build(EmbeddedConfig(data_dir=tmp_path)).app

    async def check() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            preflight = await client.options(
                "/users/login/",
                headers={
                    "Origin": "http://127.0.0.1:4200",
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "content-type,x-retry",
                },
            )
            assert preflight.status_code == 200
            assert preflight.headers["access-control-allow-origin"] == "http://127.0.0.1:4200"
            assert preflight.headers["access-control-allow-credentials"] == "true"
            stranger = await client.options(
                "/users/login/",
                headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
            )
            assert "access-control-allow-origin" not in stranger.headers

    asyncio.run(check())
