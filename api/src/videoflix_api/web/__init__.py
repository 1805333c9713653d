"""The small web page served at `/`: plain HTML/JS/CSS over the public API, hls.js vendored.

The page holds no secrets and no server-side logic; it is static files plus a strict Content
Security Policy, so a title with markup in it can never run script (the page only sets textContent).
"""

from pathlib import Path

from fastapi import FastAPI
from starlette.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC_DIR = Path(__file__).parent / "static"

# Media and thumbnails may come from another origin (presigned S3 URLs in cluster mode), hence the
# wide img/media/connect sources; scripts and styles only ever come from this server.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob: http: https:",
        "media-src 'self' blob: http: https:",
        "connect-src 'self' http: https:",
        "worker-src 'self' blob:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # The page changes with every release of the package; revalidate instead of caching stale JS.
    "Cache-Control": "no-cache",
}


class _StaticWithHeaders(StaticFiles):
    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(SECURITY_HEADERS)
        return response


# Where the API's e-mail links land (settings.frontend_login_path / frontend_reset_path) when the
# page itself is the frontend, as in the embedded mode.
PAGE_PATHS = ("/", "/login", "/reset-password")


def install_web(app: FastAPI) -> None:
    """Serve the page at `/` (and the e-mail link paths) and its assets under `/static/`;
    calling it twice is harmless."""
    if getattr(app.state, "videoflix_web_installed", False):
        return
    app.state.videoflix_web_installed = True

    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers=SECURITY_HEADERS)

    for path in PAGE_PATHS:
        app.add_api_route(path, index, methods=["GET"], include_in_schema=False)

    app.mount("/static", _StaticWithHeaders(directory=STATIC_DIR), name="web-static")
