"""Signed URLs for local files and the route that serves them with HTTP range requests.

The local stand-in for S3 presigned GET URLs: `/media/<key>?expires=<unix>&signature=<hmac>`.
Private objects stay private (no signature, no bytes), and the API hands URLs out through the same
`Storage.url` as in cluster mode. Range handling (206, Content-Range, Accept-Ranges, 416, If-Range,
multipart/byteranges) is Starlette's `FileResponse`; only invalid Range headers are ignored as RFC
9110 asks instead of refused with 400. tests/embedded/test_ranges.py checks it on the real server.
"""

from __future__ import annotations

import hashlib
import hmac
import mimetypes
import re
import time
from contextvars import ContextVar
from pathlib import Path, PurePosixPath
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Query, Request
from starlette.datastructures import Headers
from starlette.responses import FileResponse
from starlette.types import ASGIApp, Receive, Scope, Send

MEDIA_PATH = "/media/"

# The base URL the current request came in on (set by `RequestBaseUrlMiddleware`): signed URLs then
# point at the host the browser used (localhost, 127.0.0.1 or a LAN address) and stay same-origin.
request_base_url: ContextVar[str | None] = ContextVar("request_base_url", default=None)

# Types browsers and hls.js insist on; mimetypes does not know all of them on every system.
_MEDIA_TYPES = {
    ".m3u8": "application/vnd.apple.mpegurl",
    ".mp4": "video/mp4",
    ".m4s": "video/iso.segment",
    ".vtt": "text/vtt",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
}


class InvalidKey(ValueError):
    """A storage key that could escape the storage root or is not a plain relative path."""


def validate_key(key: str) -> str:
    """The key itself when it is a safe relative path (no `..`, no absolute path, no NUL)."""
    if not key or len(key) > 1024 or "\x00" in key or "\\" in key or key.startswith("/"):
        raise InvalidKey(f"invalid storage key {key!r}")
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise InvalidKey(f"invalid storage key {key!r}")
    return key


def key_path(root: Path, key: str) -> Path:
    """Where a key (or a prefix ending in `/`) lives on disk under `root`."""
    return root.joinpath(*validate_key(key.removesuffix("/")).split("/"))


def media_type(key: str) -> str:
    suffix = PurePosixPath(key).suffix.lower()
    return _MEDIA_TYPES.get(suffix) or mimetypes.guess_type(key)[0] or "application/octet-stream"


class UrlSigner:
    """HMAC-SHA256 signatures over (key, expiry): unforgeable without the server's secret."""

    def __init__(self, secret: bytes, base_url: str) -> None:
        if len(secret) < 16:
            raise ValueError("the media signing secret must be at least 16 bytes")
        self._secret = secret
        self._base_url = base_url.rstrip("/")

    def _signature(self, key: str, expires: int) -> str:
        message = f"GET\n{key}\n{expires}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def url(self, key: str, expires_in: int, now: float | None = None) -> str:
        validate_key(key)
        expires = int((time.time() if now is None else now) + expires_in)
        signature = self._signature(key, expires)
        base = request_base_url.get() or self._base_url
        return f"{base}{MEDIA_PATH}{quote(key)}?expires={expires}&signature={signature}"

    def verify(self, key: str, expires: int, signature: str, now: float | None = None) -> bool:
        if expires < (time.time() if now is None else now):
            return False
        return hmac.compare_digest(self._signature(key, expires), signature)


class RequestBaseUrlMiddleware:
    """Records the request's own base URL for `UrlSigner.url` (see `request_base_url`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = request_base_url.set(str(Request(scope).base_url).rstrip("/"))
        try:
            await self.app(scope, receive, send)
        finally:
            request_base_url.reset(token)


_RANGE_SPEC = re.compile(r"^\s*(?:(\d+)\s*-\s*(\d*)|-\s*(\d+))\s*$")


def valid_range_header(value: str) -> bool:
    """Whether `value` is a syntactically valid bytes Range header (RFC 9110 section 14.1.1).

    Satisfiability (416) is the file's business; a header that is not even valid must be ignored
    (RFC 9110 section 14.2), i.e. answered with the whole file rather than an error.
    """
    unit, sep, specs = value.partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return False
    parts = specs.split(",")
    for part in parts:
        match = _RANGE_SPEC.match(part)
        if match is None:
            return False
        first, last, _suffix = match.groups()
        if first is not None and last and int(last) < int(first):
            return False
    return True


class RangeFileResponse(FileResponse):
    """Starlette's FileResponse, except that an invalid Range header is ignored (200 with the whole
    file, as RFC 9110 asks) instead of answered with 400."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        range_header = Headers(scope=scope).get("range")
        if range_header is not None and not valid_range_header(range_header):
            scope = dict(scope)
            scope["headers"] = [(k, v) for k, v in scope["headers"] if k.lower() != b"range"]
        await super().__call__(scope, receive, send)


def media_router(root: Path, signer: UrlSigner) -> APIRouter:
    """GET/HEAD of a signed local object; 403 on a bad or expired signature, 404 when absent."""
    router = APIRouter(include_in_schema=False)

    @router.api_route(MEDIA_PATH + "{key:path}", methods=["GET", "HEAD"])
    async def get_media(
        request: Request,
        key: str,
        expires: int | None = Query(default=None),
        signature: str | None = Query(default=None, max_length=128),
    ) -> RangeFileResponse:
        try:
            path = key_path(root, key)
        except InvalidKey as exc:
            raise HTTPException(status_code=404, detail="Not found.") from exc
        # Like a private bucket: without a valid signature the object is forbidden.
        if expires is None or signature is None or not signer.verify(key, expires, signature):
            raise HTTPException(status_code=403, detail="Invalid or expired signature.")
        if not path.is_file():
            raise HTTPException(status_code=404, detail="Not found.")
        # Caching may last as long as the signature does (for playback links: the whole viewing).
        max_age = max(0, expires - int(time.time()))
        return RangeFileResponse(
            path,
            media_type=media_type(key),
            headers={
                "Cache-Control": f"private, max-age={max_age}",
                # Like a bucket's CORS rule: the signature is the credential, so any origin (the
                # Angular dev server, hls.js) may read; no cookies are involved.
                "Access-Control-Allow-Origin": "*",
                "Access-Control-Expose-Headers": "Content-Range, Accept-Ranges, Content-Length",
            },
        )

    return router
