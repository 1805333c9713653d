"""Upload names never leave `videos/<id>/source/`; oversized bodies get 413 before being read.

10,000 fuzzed names go through the key function the upload routes use (`staff._source_key`); a
handful go through the real routes (streamed upload, presigned multipart initiate) of a uvicorn
served API against MinIO. The size limit is attacked with a raw socket client that declares (or
streams) far more than the limit and sends only a few KB.
"""

from __future__ import annotations

import posixpath
import random
import re
import select
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
import pytest
from fastapi import FastAPI
from videoflix_api.config import Settings
from videoflix_api.routes.staff import _source_key
from videoflix_core.db import Video
from videoflix_core.storage import safe_filename

from tests.ops.apisupport import api

pytestmark = pytest.mark.security

settings = api.settings  # the API's fixture: real PostgreSQL, MinIO and SMTP

ORIGIN = "https://app.videoflix.test"
LIMIT = 256 * 1024  # upload_max_bytes of the served app: small, so "far above" stays cheap
S3_MAX_KEY_BYTES = 1024
# Cheap argon2id: the staff login costs milliseconds instead of ~0.4 s on this machine.
CHEAP_HASHING = {
    "password_hash_memory_kib": 8192,
    "password_hash_time_cost": 1,
    "password_hash_parallelism": 1,
}

# Pieces an attacker combines: traversal in every spelling, separators and their look-alikes
# (U+2215 division slash, U+2044 fraction slash, fullwidth U+FF0E/FF0F/FF3C), control and
# bidi characters.
PIECES = [
    "../", "..", "..\\", "/", "\\", "%2e%2e%2f", "%2e%2e/", "..%2f", "%2f", "%5c", "%00", "\x00",
    "\u2215", "\u2044", "\uff0e", "\uff0e\uff0e\u2215", "\uff0f", "\uff3c", "\ufe52", "\u2024",
    "\u202e", "\u200f", "\u200b", "\u0301", "C:\\", "~", ".", " ", "\r\n", "\t", "*", "?", "'",
    '"', "<", ">", "|", ";", "$(id)", "video", "a", ".mp4", "\U0001f3ac", "\u00e9", "\u0131",
    "source", "videos/1/", "%252e%252e%252f", "\x7f", "\u2028",
]
EDGE_CASES = [
    "", ".", "..", "...", "/", "\\", "../../../etc/passwd", "..\\..\\windows\\win.ini",
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd", "\x00", "a\x00../../x", "/absolute/path.mp4",
    "\u2215etc\u2215passwd", "\uff0e\uff0e\uff0fetc", "\u202egpj.exe", "a" * 1000,
    "\u00e9" * 500, "../" * 333, "." * 1000, "x" * 995 + ".mp4", "clip." + "4" * 990,
]


def fuzzed_names(count: int) -> list[str]:
    rng = random.Random(12)  # fixed: a failure names a reproducible input
    names = list(EDGE_CASES)
    while len(names) < count:
        names.append("".join(rng.choice(PIECES) for _ in range(rng.randint(1, 24))))
    return names


def check_key(key: str, video_id: int) -> None:
    prefix = f"videos/{video_id}/source/"
    assert key.startswith(prefix), key
    name = key[len(prefix):]
    # One plain segment: nothing a path normaliser, a URL decoder or S3 could turn into a parent.
    assert re.fullmatch(r"u[0-9a-f]{12}-?[A-Za-z0-9._-]*", name), key
    assert name not in ("", ".", "..") and "/" not in name and "%" not in name
    for decoded in (key, unquote(key), unquote(unquote(key))):
        assert posixpath.normpath(decoded) == decoded.rstrip("/"), key
        assert posixpath.normpath(decoded).startswith(prefix), key
    assert len(key.encode()) <= S3_MAX_KEY_BYTES


def test_ten_thousand_fuzzed_names_stay_under_the_source_prefix() -> None:
    names = fuzzed_names(10_000)
    assert len(names) == 10_000 and len(set(names)) > 9_000
    for video_id in (1, 42, 2**31 - 1):
        video = Video(id=video_id)
        for original in names:
            check_key(_source_key(video, original), video_id)


def test_safe_filename_alone_is_one_plain_segment() -> None:
    for original in fuzzed_names(10_000):
        name = safe_filename(original)
        assert re.fullmatch(r"[A-Za-z0-9._-]{1,120}", name), (original, name)
        assert name not in (".", "..") and not name.startswith((".", "-"))


# --- through the real routes ------------------------------------------------------------------


@dataclass
class Live:
    url: str
    app: FastAPI
    headers: dict[str, str]

    def host_port(self) -> tuple[str, int]:
        parts = urlsplit(self.url)
        assert parts.hostname and parts.port
        return parts.hostname, parts.port


@pytest.fixture
def live(settings: Settings) -> Iterator[Live]:
    cheap = {k: v for k, v in CHEAP_HASHING.items() if k in Settings.model_fields}
    app = api.build_app(settings.model_copy(update={**cheap, "upload_max_bytes": LIMIT}))
    try:
        account = api.make_user(app, f"staff-{uuid.uuid4().hex[:8]}@example.com", staff=True)
        with api.serve(app) as url:
            cookies = api.live_login(url, account)
            cookie = "; ".join(f"{k}={v}" for k, v in cookies.items())
            yield Live(url, app, {"Origin": ORIGIN, "Cookie": cookie})
    finally:
        app.state.engine.dispose()


HOSTILE = [
    "../../../../etc/passwd",
    "..\\..\\videos\\1\\source\\x.mp4",
    "%2e%2e%2f%2e%2e%2fvideos%2f1%2fx.mp4",
    "/videos/1/source/evil.mp4",
    "\u2215..\u2215..\u2215evil.mp4",
    "\uff0e\uff0e\uff0f\uff0e\uff0e\uff0fevil.mp4",
    "\u202emp4.exe",
    "\u00e9" * 400 + ".mp4",
]


def multipart_body(filename: str, data: bytes, boundary: str = "fuzzboundary") -> bytes:
    """A form written by hand: the name goes out raw (UTF-8, quotes escaped as browsers do)."""
    quoted = filename.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")
    return (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nFuzz\r\n"
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{quoted}\"\r\n"
        f"Content-Type: video/mp4\r\n\r\n"
    ).encode() + data + f"\r\n--{boundary}--\r\n".encode()


def test_hostile_names_through_the_routes_are_stored_under_the_source_prefix(
    live: Live, minio_server: Any, s3_bucket: str
) -> None:
    for filename in HOSTILE:
        body = multipart_body(filename, b"\x00\x00\x00\x18ftypmp42 not really a video")
        r = httpx.post(
            live.url + "/videos/upload/", content=body, timeout=30,
            headers={**live.headers, "Content-Type": "multipart/form-data; boundary=fuzzboundary"},
        )
        assert r.status_code == 201, (filename, r.text)
        video_id = r.json()["id"]
        with live.app.state.sessionmaker() as session:
            key = session.get(Video, video_id).source_key
        check_key(key, video_id)
        stored = minio_server.keys(s3_bucket, f"videos/{video_id}/")
        assert stored == [key], (filename, stored)

        # Presigned multipart: the key handed to the client, the row's and MinIO's agree too.
        r = httpx.post(
            f"{live.url}/videos/{video_id}/multipart/", headers=live.headers, timeout=30,
            json={"filename": filename[:255], "size": 1000, "content_type": "video/mp4"},
        )
        assert r.status_code == 201, (filename, r.text)
        check_key(r.json()["key"], video_id)
        # (MinIO lists the uploads of one exact key only.)
        uploads = minio_server.client().list_multipart_uploads(
            Bucket=s3_bucket, Prefix=r.json()["key"]
        ).get("Uploads", [])
        assert [u["Key"] for u in uploads] == [r.json()["key"]]
    # Nothing landed anywhere else in the bucket.
    assert all(k.startswith("videos/") for k in minio_server.keys(s3_bucket))
    for key in minio_server.keys(s3_bucket):
        assert re.match(r"videos/\d+/source/u[0-9a-f]{12}", key), key


# --- 413 before the body is read --------------------------------------------------------------


def request_head(live: Live, path: str, method: str, extra: str) -> bytes:
    headers = "".join(f"{k}: {v}\r\n" for k, v in live.headers.items())
    host, port = live.host_port()
    return (
        f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{headers}"
        f"Content-Type: multipart/form-data; boundary=fuzzboundary\r\n{extra}\r\n"
    ).encode()


def read_status(sock: socket.socket) -> int:
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    match = re.match(rb"HTTP/1\.1 (\d{3}) ", data)
    assert match, data[:200]
    return int(match[1])


@pytest.mark.parametrize("path", ["/videos/upload/", "source"])
def test_declared_length_above_the_limit_gets_413_after_a_few_kb(live: Live, path: str) -> None:
    if path == "source":
        r = httpx.post(live.url + "/videos/", json={"title": "x"}, headers=live.headers)
        assert r.status_code == 201, r.text
        path, method = f"/videos/{r.json()['id']}/source/", "PUT"
    else:
        method = "POST"
    declared = 1 << 40  # a terabyte: reading it would take forever
    head = request_head(live, path, method, f"Content-Length: {declared}\r\n")
    with socket.create_connection(live.host_port(), timeout=15) as sock:
        sock.sendall(head + multipart_body("x.mp4", b"\x00" * 4096)[:4096])
        assert read_status(sock) == 413


def test_streamed_body_above_the_limit_gets_413_while_little_was_sent(live: Live) -> None:
    """Chunked, no length to refuse up front: the limit stops the stream once it is passed."""
    head = request_head(live, "/videos/upload/", "POST", "Transfer-Encoding: chunked\r\n")
    chunk = b"\x00" * 16384
    framed = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    would_send = 64 << 20  # the client means to send 64 MiB, 256 times the limit
    sent = 0
    with socket.create_connection(live.host_port(), timeout=15) as sock:
        form = multipart_body("x.mp4", b"")[: -len("\r\n--fuzzboundary--\r\n")]
        sock.sendall(head + f"{len(form):x}\r\n".encode() + form + b"\r\n")
        while sent < would_send:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            try:
                sock.sendall(framed)
            except OSError:  # the server closed: its answer is waiting
                break
            sent += len(chunk)
        status = read_status(sock)
    assert status == 413
    print(f"413 after {sent} streamed bytes (limit {LIMIT})")
    # The answer came after the limit, long before the 64 MiB: a few MB of socket buffers.
    assert LIMIT < sent < 32 * 1024 * 1024, sent
