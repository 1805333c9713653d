"""HTTP range requests on the real embedded server: what browsers and hls.js rely on to seek."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.embedded.server import ReadyServer


@pytest.fixture(scope="module")
def media(ready_server: ReadyServer) -> tuple[str, bytes]:
    """A signed progressive-MP4 URL from the public API and the file's full bytes."""
    response = ready_server.client.get(
        f"/content/video-url/{ready_server.video['id']}/", params={"quality": "360p"}
    )
    assert response.status_code == 200, response.text
    url = response.json()["url"]
    full = httpx.get(url)
    assert full.status_code == 200
    return url, full.content


def test_full_get_announces_ranges(media: tuple[str, bytes]) -> None:
    url, body = media
    response = httpx.get(url)
    assert response.status_code == 200
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["content-type"] == "video/mp4"
    assert int(response.headers["content-length"]) == len(body) > 10_000
    assert body[4:8] == b"ftyp"  # an MP4, as the browser expects


def test_closed_range(media: tuple[str, bytes]) -> None:
    url, body = media
    response = httpx.get(url, headers={"Range": "bytes=100-199"})
    assert response.status_code == 206
    assert response.headers["content-range"] == f"bytes 100-199/{len(body)}"
    assert response.headers["content-length"] == "100"
    assert response.content == body[100:200]


def test_open_ended_and_suffix_ranges(media: tuple[str, bytes]) -> None:
    url, body = media
    tail_start = len(body) - 1000
    open_ended = httpx.get(url, headers={"Range": f"bytes={tail_start}-"})
    assert open_ended.status_code == 206
    assert open_ended.headers["content-range"] == f"bytes {tail_start}-{len(body) - 1}/{len(body)}"
    assert open_ended.content == body[tail_start:]

    suffix = httpx.get(url, headers={"Range": "bytes=-500"})
    assert suffix.status_code == 206
    assert suffix.content == body[-500:]
    assert suffix.headers["content-range"] == f"bytes {len(body) - 500}-{len(body) - 1}/{len(body)}"


def test_range_past_the_end_is_clamped(media: tuple[str, bytes]) -> None:
    url, body = media
    response = httpx.get(url, headers={"Range": f"bytes=10-{len(body) + 5000}"})
    assert response.status_code == 206
    assert response.headers["content-range"] == f"bytes 10-{len(body) - 1}/{len(body)}"
    assert response.content == body[10:]


@pytest.mark.parametrize("spec", ["bytes={size}-", "bytes={size}-{size2}", "bytes=-0"])
def test_unsatisfiable_range_is_416(media: tuple[str, bytes], spec: str) -> None:
    url, body = media
    header = spec.format(size=len(body), size2=len(body) + 10)
    response = httpx.get(url, headers={"Range": header})
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{len(body)}"


@pytest.mark.parametrize("header", ["items=0-10", "bytes=20-10", "bytes=abc", "bytes 0-10"])
def test_invalid_range_header_is_ignored(media: tuple[str, bytes], header: str) -> None:
    # RFC 9110 14.2: a Range header that is not valid is ignored, so the whole file comes back.
    url, body = media
    response = httpx.get(url, headers={"Range": header})
    assert response.status_code == 200
    assert response.content == body


def test_multiple_ranges_are_multipart(media: tuple[str, bytes]) -> None:
    url, body = media
    response = httpx.get(url, headers={"Range": "bytes=0-9,1000-1009"})
    assert response.status_code == 206
    content_type = response.headers["content-type"]
    assert content_type.startswith("multipart/byteranges; boundary=")
    assert f"Content-Range: bytes 0-9/{len(body)}".encode() in response.content
    assert f"Content-Range: bytes 1000-1009/{len(body)}".encode() in response.content
    assert body[0:10] in response.content and body[1000:1010] in response.content


def test_head_and_if_range(media: tuple[str, bytes]) -> None:
    url, body = media
    head = httpx.head(url, headers={"Range": "bytes=0-99"})
    assert head.status_code == 206
    assert head.content == b""
    assert head.headers["content-range"] == f"bytes 0-99/{len(body)}"
    etag = head.headers["etag"]

    fresh = httpx.get(url, headers={"Range": "bytes=0-99", "If-Range": etag})
    assert fresh.status_code == 206 and fresh.content == body[:100]
    stale = httpx.get(url, headers={"Range": "bytes=0-99", "If-Range": '"stale"'})
    assert stale.status_code == 200 and stale.content == body


def test_signature_is_required(media: tuple[str, bytes]) -> None:
    url, _ = media
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    base = f"{parts.scheme}://{parts.netloc}{parts.path}"
    expires, signature = query["expires"][0], query["signature"][0]

    assert httpx.get(base).status_code == 403  # no signature at all
    tampered = "0" * len(signature) if signature[0] != "0" else "1" * len(signature)
    bad = httpx.get(base, params={"expires": expires, "signature": tampered})
    assert bad.status_code == 403
    # Moving the expiry invalidates the signature, so a URL cannot be made to live longer.
    longer = httpx.get(base, params={"expires": str(int(expires) + 3600), "signature": signature})
    assert longer.status_code == 403
    # The same signature does not open another object.
    other = base.replace("/360p/", "/120p/")
    assert httpx.get(other, params={"expires": expires, "signature": signature}).status_code == 403


def test_path_traversal_is_refused(media: tuple[str, bytes]) -> None:
    url, _ = media
    parts = urlsplit(url)
    for path in (
        "/media/../secret_key",
        "/media/videos/%2e%2e/%2e%2e/secret_key",
        "/media//etc/passwd",
    ):
        response = httpx.get(
            f"{parts.scheme}://{parts.netloc}{path}?expires=9999999999&signature=x"
        )
        assert response.status_code in (403, 404), path
        assert b"secret" not in response.content


def test_hls_playlist_points_at_ranges_that_work(ready_server: ReadyServer) -> None:
    """The media playlist's byte ranges, fetched as hls.js would, are fragments of the file."""
    video_id = ready_server.video["id"]
    playlist = ready_server.client.get(f"/videos/{video_id}/hls/360p/index.m3u8")
    assert playlist.status_code == 200
    text = playlist.text
    ranges = re.findall(r"#EXT-X-BYTERANGE:(\d+)@(\d+)\n(\S+)", text)
    assert len(ranges) >= 2
    for length, offset, uri in ranges[:3]:
        start, size = int(offset), int(length)
        response = httpx.get(uri, headers={"Range": f"bytes={start}-{start + size - 1}"})
        assert response.status_code == 206
        assert len(response.content) == size
        assert response.content[4:8] in (b"moof", b"styp", b"sidx", b"emsg", b"prft")
