"""Listing, detail, favorites and playback against real PostgreSQL and MinIO (URLs fetched)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient
from videoflix_api.config import Settings
from videoflix_core.db import User

from .conftest import Media, add_video, build_app, login, make_user, put_ready_video


def test_list_needs_login(client: TestClient) -> None:
    assert client.get("/content/").status_code == 401
    assert client.get("/videos/").status_code == 401


def test_a_deactivated_or_deleted_account_is_signed_out_of_the_read_routes(
    app: FastAPI, client: TestClient, media: Media, minio_server: Any, s3_bucket: str
) -> None:
    # The hot read routes check the account with their own query (`deps.Reader`), not through
    # `get_current_user`: a token that is still valid must not outlive its account there either.
    video_id = put_ready_video(app, minio_server, s3_bucket, media)
    routes = [
        "/content/",
        "/content/?limit=5",
        "/videos/?favorites=true&limit=5",
        f"/content/video-url/{video_id}/?quality=120p",
        f"/content/video-url/{video_id + 1}/",  # no such video: 404 signed in, 401 signed out
        f"/content/video-url/{2**70}/",  # beyond the column: the same
    ]
    for email, end in (("gone@example.com", "delete"), ("paused@example.com", "deactivate")):
        client.cookies.clear()
        account = make_user(app, email)
        login(client, account)
        assert [client.get(path).status_code for path in routes] == [200, 200, 200, 200, 404, 404]
        with app.state.sessionmaker() as session:
            user = session.get_one(User, account.id)
            if end == "delete":
                session.delete(user)
            else:
                user.is_active = False
            session.commit()
        for path in routes:
            r = client.get(path)
            assert r.status_code == 401, (end, path, r.text)
            assert r.json() == {"detail": "User is inactive or was deleted."}
    client.cookies.clear()
    text = client.get("/metrics").text
    assert 'videoflix_auth_failures_total{reason="inactive"} 12.0' in text


def test_content_list_shape_and_keyset_pages(app: FastAPI, viewer_client: TestClient) -> None:
    base = datetime(2026, 1, 1, tzinfo=UTC)
    ids = [
        add_video(
            app,
            title=f"Video {i}",
            category="drama" if i % 2 else "comedy",
            created_at=base + timedelta(minutes=i // 2),
        )  # pairs share a timestamp
        for i in range(7)
    ]
    r = viewer_client.get("/content/")
    assert r.status_code == 200
    items = r.json()
    assert [v["id"] for v in items] == sorted(ids, reverse=True)
    first = items[0]
    assert set(first) >= {
        "id",
        "title",
        "description",
        "category",
        "created_at",
        "image_file",
        "video_file",
        "converted_files",
        "processing_state",
        "processing_error",
    }
    assert first["processing_state"] == "pending" and first["image_file"] is None
    assert "X-Next-Cursor" not in r.headers

    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        r = viewer_client.get("/videos/", params=params)
        page = r.json()
        seen += [v["id"] for v in page["results"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    # Ties on created_at are broken by id: nothing repeats, nothing is skipped.
    assert seen == sorted(ids, reverse=True)

    r = viewer_client.get("/content/", params={"limit": 2})
    assert r.headers["X-Next-Cursor"] and 'rel="next"' in r.headers["Link"]

    r = viewer_client.get("/videos/", params={"category": "drama"})
    assert {v["category"] for v in r.json()["results"]} == {"drama"}
    assert len(r.json()["results"]) == 3
    r = viewer_client.get("/videos/", params={"search": "video 4"})
    assert [v["title"] for v in r.json()["results"]] == ["Video 4"]
    r = viewer_client.get("/videos/", params={"search": "%"})
    assert r.json()["results"] == []
    r = viewer_client.get("/videos/", params={"processing_state": "ready"})
    assert r.json()["results"] == []
    assert viewer_client.get("/videos/categories/").json() == {"categories": ["comedy", "drama"]}


def test_bad_list_parameters(viewer_client: TestClient) -> None:
    r = viewer_client.get("/videos/", params={"cursor": "garbage!"})
    assert r.status_code == 400 and r.json() == {"cursor": ["Invalid cursor."]}
    r = viewer_client.get("/videos/", params={"processing_state": "failed"})
    assert r.status_code == 400 and "processing_state" in r.json()
    r = viewer_client.get("/videos/", params={"limit": 0})
    assert r.status_code == 400


def test_detail_and_favorites(app: FastAPI, viewer_client: TestClient) -> None:
    video_id = add_video(app, title="Fav", description="d", category="c")
    r = viewer_client.get(f"/videos/{video_id}/")
    assert r.status_code == 200
    assert r.json()["is_favorite"] is False and r.json()["hls_url"] is None
    assert viewer_client.get("/videos/999999/").status_code == 404
    assert viewer_client.get("/videos/abc/").status_code == 400

    assert viewer_client.post("/content/add-favorite/", json={"video_id": video_id}).json() == [
        video_id
    ]
    assert viewer_client.get(f"/videos/{video_id}/").json()["is_favorite"] is True
    assert viewer_client.get("/content/favorites/").json() == [video_id]
    assert [
        v["id"] for v in viewer_client.get("/videos/", params={"favorites": True}).json()["results"]
    ] == [video_id]
    # Toggles off again.
    assert viewer_client.post("/content/add-favorite/", json={"video_id": video_id}).json() == []
    r = viewer_client.post("/content/add-favorite/", json={"video_id": 424242})
    assert r.status_code == 404 and r.json() == {"detail": "Not found."}
    r = viewer_client.post("/content/add-favorite/", json={})
    assert r.status_code == 400 and r.json() == {"video_id": ["This field is required."]}


def test_favorites_are_per_user(app: FastAPI, client: TestClient) -> None:
    video_id = add_video(app)
    alice, bob = make_user(app, "alice@example.com"), make_user(app, "bob@example.com")
    login(client, alice)
    client.post("/content/add-favorite/", json={"video_id": video_id})
    client.cookies.clear()
    login(client, bob)
    assert client.get("/content/favorites/").json() == []


def test_playback_url_is_presigned_and_plays(
    app: FastAPI, viewer_client: TestClient, minio_server: Any, s3_bucket: str, media: Media
) -> None:
    video_id = put_ready_video(app, minio_server, s3_bucket, media)
    r = viewer_client.get(f"/content/video-url/{video_id}/", params={"quality": "120p"})
    assert r.status_code == 200
    url = r.json()["url"]
    # Valid for the whole viewing: the 2 s video + the 300 s base + 4 h of pauses, signed at the
    # start of its five-minute window for that window longer.
    assert "X-Amz-Signature=" in url and f"X-Amz-Expires={14702 + 300}" in url
    fetched = httpx.get(url)
    assert fetched.status_code == 200
    assert fetched.content == media.rendition_mp4.read_bytes()

    r = viewer_client.get(f"/content/video-url/{video_id}/", params={"quality": "720p"})
    assert r.status_code == 200 and r.json()["quality"] == "120p"  # the best one below
    r = viewer_client.get(f"/content/video-url/{video_id}/", params={"quality": "../etc"})
    assert r.status_code == 400
    assert viewer_client.get("/content/video-url/31337/").status_code == 404

    # The list links to redirecting endpoints instead of presigning every item.
    item = viewer_client.get("/content/").json()[0]
    assert item["image_file"] == f"https://testserver/videos/{video_id}/thumbnail/"
    assert item["video_file"] == f"https://testserver/videos/{video_id}/file/"
    assert item["converted_files"]["120p"]["height"] == 120
    r = viewer_client.get(f"/videos/{video_id}/thumbnail/", follow_redirects=False)
    assert r.status_code == 302
    assert httpx.get(r.headers["location"]).content == b"\xff\xd8jpeg"
    assert (
        viewer_client.get(
            f"/videos/{video_id}/thumbnail/", params={"kind": "sprite"}, follow_redirects=False
        ).status_code
        == 404
    )
    r = viewer_client.get(f"/videos/{video_id}/file/", follow_redirects=False)
    assert httpx.get(r.headers["location"]).status_code == 200


def test_expired_presigned_url_is_refused(
    settings: Settings, minio_server: Any, s3_bucket: str, media: Media
) -> None:
    app = build_app(settings.model_copy(update={"presign_expiry_seconds": 10}))
    try:
        with TestClient(app, base_url="https://testserver") as client:
            login(client, make_user(app, "short@example.com"))
            video_id = put_ready_video(app, minio_server, s3_bucket, media)
            # A poster keeps the base lifetime; playback URLs outlive the viewing
            # (test_playback_expiry.py).
            poster = client.get(f"/videos/{video_id}/thumbnail/", follow_redirects=False)
            url = poster.headers["location"]
            assert httpx.get(url, headers={"Range": "bytes=0-3"}).status_code == 206
            time.sleep(11)
            expired = httpx.get(url)
            assert expired.status_code == 403
            assert b"expired" in expired.content.lower()
    finally:
        app.state.engine.dispose()


def test_public_base_url_skips_presigning(
    settings: Settings, minio_server: Any, s3_bucket: str, media: Media
) -> None:
    public = f"{minio_server.endpoint_url}/{s3_bucket}"
    minio_server.client().put_bucket_policy(
        Bucket=s3_bucket,
        Policy=(
            '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":["*"]},'
            f'"Action":["s3:GetObject"],"Resource":["arn:aws:s3:::{s3_bucket}/*"]}}]}}'
        ),
    )
    app = build_app(settings.model_copy(update={"s3_public_base_url": public}))
    try:
        with TestClient(app, base_url="https://testserver") as client:
            login(client, make_user(app, "pub@example.com"))
            video_id = put_ready_video(app, minio_server, s3_bucket, media)
            url = client.get(f"/content/video-url/{video_id}/").json()["url"]
            assert url == f"{public}/videos/{video_id}/120p/video.mp4"
            assert httpx.get(url).content == media.rendition_mp4.read_bytes()
            item = client.get("/content/").json()[0]
            assert item["image_file"] == f"{public}/videos/{video_id}/thumbnails/poster.jpg"
    finally:
        app.state.engine.dispose()


def test_hls_master_and_media_playlists(
    app: FastAPI, viewer_client: TestClient, minio_server: Any, s3_bucket: str, media: Media
) -> None:
    video_id = put_ready_video(app, minio_server, s3_bucket, media)
    detail = viewer_client.get(f"/videos/{video_id}/").json()
    assert detail["hls_url"] == f"https://testserver/videos/{video_id}/hls/master.m3u8"
    r = viewer_client.get(f"/videos/{video_id}/hls/master.m3u8")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/vnd.apple.mpegurl")
    lines = r.text.splitlines()
    assert lines[0] == "#EXTM3U"
    # A row without peakBitrate/codecs (older transcoder): the average stands in for the peak.
    assert "BANDWIDTH=150000,AVERAGE-BANDWIDTH=150000,RESOLUTION=160x120" in r.text
    assert "CODECS=" not in r.text
    assert "120p/index.m3u8" in lines

    r = viewer_client.get(f"/videos/{video_id}/hls/120p/index.m3u8")
    assert r.status_code == 200
    text = r.text
    original = media.rendition_playlist.read_text()
    assert "#EXT-X-BYTERANGE" in original and "#EXT-X-BYTERANGE" in text
    urls = {line for line in text.splitlines() if line and not line.startswith("#")}
    assert len(urls) == 1  # one file, one presigned URL for every segment
    url = urls.pop()
    assert "X-Amz-Signature=" in url and f'URI="{url}"' in text
    # The byte ranges from the playlist are served from the presigned URL.
    first_range = next(line for line in text.splitlines() if line.startswith("#EXT-X-BYTERANGE"))
    length, _, offset = first_range.split(":", 1)[1].partition("@")
    start = int(offset or 0)
    part = httpx.get(url, headers={"Range": f"bytes={start}-{start + int(length) - 1}"})
    assert part.status_code == 206
    assert part.content == media.rendition_mp4.read_bytes()[start : start + int(length)]

    assert viewer_client.get(f"/videos/{video_id}/hls/720p/index.m3u8").status_code == 404
    empty = add_video(app)
    assert viewer_client.get(f"/videos/{empty}/hls/master.m3u8").status_code == 404
