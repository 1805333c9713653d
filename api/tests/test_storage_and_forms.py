"""The S3 storage implementation against MinIO, and the streaming form parser on real bodies."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.requests import Request
from videoflix_api.config import Settings
from videoflix_api.services import uploads
from videoflix_api.services.storage import S3Storage, StorageError

PART = 5 * 1024 * 1024


@pytest.fixture
def storage(settings: Settings) -> S3Storage:
    return S3Storage(settings.model_copy(update={"multipart_part_bytes": PART}))


def test_streamed_upload_uses_multipart_parts(
    storage: S3Storage, big_source: Path, minio_server: Any, s3_bucket: str
) -> None:
    data = big_source.read_bytes()
    assert len(data) > PART
    sink = storage.open_upload("videos/1/source/big.mp4", "video/mp4")
    for start in range(0, len(data), 1024 * 1024):
        sink.write(data[start : start + 1024 * 1024])
    assert sink.commit() == len(data)
    head = minio_server.client().head_object(Bucket=s3_bucket, Key="videos/1/source/big.mp4")
    assert head["ContentType"] == "video/mp4"
    # Assembled from 5 MiB parts: memory stayed bounded by one part.
    assert head["ETag"].endswith(f'-{math.ceil(len(data) / PART)}"')
    assert storage.size("videos/1/source/big.mp4") == len(data)
    assert httpx.get(storage.url("videos/1/source/big.mp4", expires_in=60)).content == data


def test_aborted_upload_leaves_nothing(
    storage: S3Storage, big_source: Path, minio_server: Any, s3_bucket: str
) -> None:
    sink = storage.open_upload("videos/2/source/x.mp4", "video/mp4")
    sink.write(big_source.read_bytes())
    assert minio_server.client().list_multipart_uploads(Bucket=s3_bucket).get("Uploads")
    sink.abort()
    assert not minio_server.client().list_multipart_uploads(Bucket=s3_bucket).get("Uploads")
    assert minio_server.keys(s3_bucket) == []


def test_small_objects_read_size_delete(
    storage: S3Storage, minio_server: Any, s3_bucket: str
) -> None:
    sink = storage.open_upload("videos/3/720p/index.m3u8", "application/vnd.apple.mpegurl")
    sink.write(b"#EXTM3U\n")
    sink.commit()
    for key in ("videos/3/720p/video.mp4", "videos/30/keep.txt"):
        minio_server.client().put_object(Bucket=s3_bucket, Key=key, Body=b"x")
    assert storage.read("videos/3/720p/index.m3u8", max_bytes=100) == b"#EXTM3U\n"
    with pytest.raises(StorageError):
        storage.read("videos/3/720p/index.m3u8", max_bytes=3)
    assert storage.read("videos/3/none", max_bytes=10) is None
    assert storage.size("videos/3/none") is None
    with pytest.raises(ValueError):
        storage.delete_prefix("videos/3")  # would also match videos/30/
    assert storage.delete_prefix("videos/3/") == 2
    assert minio_server.keys(s3_bucket) == ["videos/30/keep.txt"]
    storage.ping()


def _request(body: bytes, content_type: str, chunk: int) -> Request:
    chunks = [body[i : i + chunk] for i in range(0, len(body), chunk)] or [b""]

    async def receive() -> dict[str, Any]:
        data = chunks.pop(0) if chunks else b""
        return {"type": "http.request", "body": data, "more_body": bool(chunks)}

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "headers": [(b"content-type", content_type.encode())],
    }
    return Request(scope, receive)


def _form_body(fields: dict[str, str], filename: str, payload: bytes) -> tuple[bytes, str]:
    request = httpx.Request(
        "POST", "http://x/", data=fields, files={"file": (filename, payload, "video/mp4")}
    )
    return request.read(), request.headers["content-type"]


async def _events(request: Request, **kwargs: Any) -> list[uploads.FormEvent]:
    return [event async for event in uploads.iter_form(request, **kwargs)]


@pytest.mark.parametrize("chunk", [1, 7, 4096, 1 << 20])
def test_form_parser_streams_across_chunk_boundaries(chunk: int) -> None:
    import asyncio

    payload = bytes(range(256)) * 40 + b"\r\n--not-a-boundary\r\n"
    body, ctype = _form_body({"title": "Hällo", "category": "c"}, "clip é.mp4", payload)
    events = asyncio.run(_events(_request(body, ctype, chunk)))
    fields = {e.name: e.value for e in events if isinstance(e, uploads.FormField)}
    assert fields == {"title": "Hällo", "category": "c"}
    start = next(e for e in events if isinstance(e, uploads.FileStart))
    assert (start.name, start.filename, start.content_type) == ("file", "clip é.mp4", "video/mp4")
    data = b"".join(e.data for e in events if isinstance(e, uploads.FileChunk))
    assert data == payload
    assert isinstance(events[-1], uploads.FileEnd)
    # Fields come before the file, in the order sent.
    assert events.index(start) == 2


def test_form_parser_refuses_bad_bodies() -> None:
    import asyncio

    with pytest.raises(uploads.FormError, match="multipart"):
        asyncio.run(_events(_request(b"{}", "application/json", 10)))
    body, ctype = _form_body({"title": "x" * 100}, "a.mp4", b"1")
    with pytest.raises(uploads.FormError, match="too long"):
        asyncio.run(_events(_request(body, ctype, 10), max_field_bytes=50))
    body, ctype = _form_body({f"f{i}": "v" for i in range(5)}, "a.mp4", b"1")
    with pytest.raises(uploads.FormError, match="Too many"):
        asyncio.run(_events(_request(body, ctype, 1000), max_fields=3))
