"""Staff video management with real uploads (MinIO) and real VideoTranscode CRs (control plane)."""

from __future__ import annotations

import math
import re
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from videoflix_api.config import Settings
from videoflix_core.db import Video
from videoflix_core.transcode import Strategy

from .conftest import BASE, Cluster, Media, build_app, login, make_user

pytestmark = pytest.mark.cluster


def _row(app: FastAPI, video_id: int) -> Video:
    with app.state.sessionmaker() as session:
        video = session.get(Video, video_id)
        assert video is not None
        return video


def _upload(client: TestClient, media: Media, **fields: str) -> Any:
    data = {"title": "Uploaded", "description": "A test pattern", "category": "tests", **fields}
    with media.source.open("rb") as fh:
        return client.post(
            "/videos/upload/", data=data, files={"file": ("My Clip (final).mp4", fh, "video/mp4")}
        )


def test_viewers_cannot_manage_videos(viewer_client: TestClient) -> None:
    r = viewer_client.post("/videos/", json={"title": "x"})
    assert r.status_code == 403
    assert r.json() == {"detail": "You do not have permission to perform this action."}
    assert viewer_client.delete("/videos/1/").status_code == 403


def test_streaming_upload_creates_video_and_transcode(
    staff_app: FastAPI,
    staff_client: TestClient,
    cluster: Cluster,
    media: Media,
    minio_server: Any,
    s3_bucket: str,
) -> None:
    r = _upload(staff_client, media)
    assert r.status_code == 201, r.text
    video = r.json()
    assert video["processing_state"] == "pending" and video["has_source"]
    assert video["transcode_generation"] == 1
    row = _row(staff_app, video["id"])
    pattern = rf"videos/{video['id']}/source/u[0-9a-f]{{12}}-My-Clip-final-\.mp4"
    assert re.fullmatch(pattern, row.source_key or "")
    stored = minio_server.client().get_object(Bucket=s3_bucket, Key=row.source_key)["Body"].read()
    assert stored == media.source.read_bytes()
    assert row.source_bytes == len(stored)

    cr = cluster.transcode(video["id"])
    assert cr is not None
    assert cr["spec"]["videoId"] == video["id"]
    assert cr["spec"]["transcodeGeneration"] == 1
    assert cr["spec"]["source"] == {"bucket": s3_bucket, "key": row.source_key}
    assert cr["spec"]["strategy"] == "PerRendition"  # the default transcode_strategy

    metrics = staff_client.get("/metrics").text
    assert 'videoflix_uploads_total{kind="api"} 1.0' in metrics


def test_upload_validation_and_size_limit(
    settings: Settings,
    cluster: Cluster,
    media: Media,
    minio_server: Any,
    s3_bucket: str,
) -> None:
    app = build_app(
        settings.model_copy(
            update={
                "kubeconfig": cluster.kube.kubeconfig,
                "namespace": cluster.namespace,
                "upload_max_bytes": 4096,
            }
        )
    )
    try:
        with TestClient(app, base_url=BASE) as client:
            login(client, make_user(app, "s@example.com", staff=True))
            r = _upload(client, media)
            assert r.status_code == 413
            assert r.json()["detail"].startswith("The upload exceeds the limit")
            r = client.post(
                "/videos/upload/",
                data={"title": ""},
                files={"file": ("x.mp4", b"tiny", "video/mp4")},
            )
            assert r.status_code == 400 and "title" in r.json()
            r = client.post(
                "/videos/upload/", data={"title": "no file"}, files={"other": ("x.bin", b"abc")}
            )
            assert r.status_code == 400
            r = client.post("/videos/upload/", json={"title": "not a form"})
            assert r.status_code == 400
            # Nothing is left behind by the refused uploads.
            with app.state.sessionmaker() as session:
                assert session.query(Video).count() == 0
            assert minio_server.keys(s3_bucket) == []
    finally:
        app.state.engine.dispose()


def test_presigned_multipart_upload(
    staff_app: FastAPI,
    staff_client: TestClient,
    cluster: Cluster,
    big_source: Any,
    minio_server: Any,
    s3_bucket: str,
) -> None:
    r = staff_client.post("/videos/", json={"title": "Big one", "category": "tests"})
    assert r.status_code == 201
    video_id = r.json()["id"]
    assert r.json()["has_source"] is False
    assert cluster.transcode(video_id) is None  # nothing to transcode yet

    data = big_source.read_bytes()
    r = staff_client.post(
        f"/videos/{video_id}/multipart/",
        json={"filename": "big.mp4", "size": len(data), "content_type": "video/mp4"},
    )
    assert r.status_code == 201, r.text
    started = r.json()
    part_size, count = started["part_size"], started["part_count"]
    assert count == math.ceil(len(data) / part_size) and count >= 2

    r = staff_client.post(
        f"/videos/{video_id}/multipart/parts/", json={"part_numbers": list(range(1, count + 1))}
    )
    urls = r.json()["urls"]
    parts = []
    for entry in urls:
        n = entry["part_number"]
        chunk = data[(n - 1) * part_size : n * part_size]
        put = httpx.put(entry["url"], content=chunk)
        assert put.status_code == 200, put.text
        parts.append({"part_number": n, "etag": put.headers["etag"]})

    r = staff_client.post(
        f"/videos/{video_id}/multipart/complete/",
        json={"parts": [{"part_number": 1, "etag": '"nope"'}]},
    )
    assert r.status_code == 400 and "parts" in r.json()

    r = staff_client.post(f"/videos/{video_id}/multipart/complete/", json={"parts": parts})
    assert r.status_code == 200, r.text
    assert r.json()["transcode_generation"] == 1
    row = _row(staff_app, video_id)
    assert row.upload_id is None and row.source_bytes == len(data)
    stored = minio_server.client().get_object(Bucket=s3_bucket, Key=row.source_key)["Body"]
    assert stored.read() == data
    cr = cluster.transcode(video_id)
    assert cr is not None and cr["spec"]["source"]["key"] == row.source_key

    # Nothing in progress any more.
    r = staff_client.post(f"/videos/{video_id}/multipart/parts/", json={"part_numbers": [1]})
    assert r.status_code == 409


def test_multipart_abort_and_limits(
    staff_app: FastAPI,
    staff_client: TestClient,
    minio_server: Any,
    s3_bucket: str,
    cluster: Cluster,
) -> None:
    video_id = staff_client.post("/videos/", json={"title": "Aborted"}).json()["id"]
    r = staff_client.post(
        f"/videos/{video_id}/multipart/", json={"filename": "x.mp4", "size": 10**15}
    )
    assert r.status_code == 413
    r = staff_client.post(
        f"/videos/{video_id}/multipart/", json={"filename": "x.mp4", "size": 1000}
    )
    assert r.status_code == 201
    assert minio_server.client().list_multipart_uploads(Bucket=s3_bucket).get("Uploads")
    assert staff_client.delete(f"/videos/{video_id}/multipart/").status_code == 204
    assert not minio_server.client().list_multipart_uploads(Bucket=s3_bucket).get("Uploads")
    assert staff_client.delete(f"/videos/{video_id}/multipart/").status_code == 409
    assert (
        staff_client.post(
            "/videos/404404/multipart/", json={"filename": "x", "size": 1}
        ).status_code
        == 404
    )


def test_replace_update_retry_delete(
    staff_app: FastAPI,
    staff_client: TestClient,
    cluster: Cluster,
    media: Media,
    minio_server: Any,
    s3_bucket: str,
) -> None:
    video_id = _upload(staff_client, media).json()["id"]
    first_key = _row(staff_app, video_id).source_key

    r = staff_client.patch(f"/videos/{video_id}/", json={"title": "Renamed", "category": "new"})
    assert r.status_code == 200 and r.json()["title"] == "Renamed"
    assert r.json()["description"] == "A test pattern"
    assert staff_client.patch(f"/videos/{video_id}/", json={"title": ""}).status_code == 400

    # Retrying is only for failed videos.
    assert staff_client.post(f"/videos/{video_id}/retry/").status_code == 409

    with media.source.open("rb") as fh:
        r = staff_client.put(
            f"/videos/{video_id}/source/", files={"file": ("second.mp4", fh, "video/mp4")}
        )
    assert r.status_code == 200, r.text
    assert r.json()["transcode_generation"] == 2
    row = _row(staff_app, video_id)
    assert row.source_key != first_key
    keys = minio_server.keys(s3_bucket)
    assert row.source_key in keys and first_key not in keys  # the old source is gone
    cr = cluster.transcode(video_id)
    assert cr is not None and cr["spec"]["transcodeGeneration"] == 2
    assert cr["spec"]["source"]["key"] == row.source_key

    # The pipeline failed it: staff retries, which starts generation 3.
    with staff_app.state.sessionmaker() as session:
        video = session.get(Video, video_id)
        assert video is not None
        video.processing_state, video.processing_error = "error", "probe: not a video"
        session.commit()
    r = staff_client.post(f"/videos/{video_id}/retry/")
    assert r.status_code == 200
    assert r.json()["processing_state"] == "pending" and r.json()["processing_error"] is None
    cr = cluster.transcode(video_id)
    assert cr is not None and cr["spec"]["transcodeGeneration"] == 3

    minio_server.client().put_object(
        Bucket=s3_bucket, Key=f"videos/{video_id}/120p/video.mp4", Body=b"x"
    )
    assert staff_client.delete(f"/videos/{video_id}/").status_code == 204
    assert staff_client.get(f"/videos/{video_id}/").status_code == 404
    assert minio_server.keys(s3_bucket, f"videos/{video_id}/") == []
    assert cluster.transcode(video_id) is None
    assert staff_client.delete(f"/videos/{video_id}/").status_code == 404


def test_transcode_strategy_setting_reaches_the_cr(
    settings: Settings, cluster: Cluster, media: Media
) -> None:
    app = build_app(
        settings.model_copy(
            update={
                "kubeconfig": cluster.kube.kubeconfig,
                "namespace": cluster.namespace,
                "transcode_strategy": Strategy("SinglePass"),
            }
        )
    )
    try:
        with TestClient(app, base_url=BASE) as client:
            login(client, make_user(app, "s3@example.com", staff=True))
            r = _upload(client, media)
            assert r.status_code == 201, r.text
            assert r.json()["processing_state"] == "pending"
            cr = cluster.transcode(r.json()["id"])
            # Stored by the real API server, so the value passed the CRD's schema too.
            assert cr is not None and cr["spec"]["strategy"] == "SinglePass"
    finally:
        app.state.engine.dispose()


def test_dispatch_failure_marks_the_video_error(
    settings: Settings, cluster: Cluster, media: Media
) -> None:
    # A namespace that does not exist: the API server refuses the CR.
    app = build_app(
        settings.model_copy(
            update={"kubeconfig": cluster.kube.kubeconfig, "namespace": "no-such-namespace"}
        )
    )
    try:
        with TestClient(app, base_url=BASE) as client:
            login(client, make_user(app, "s2@example.com", staff=True))
            r = _upload(client, media)
            assert r.status_code == 201
            body = r.json()
            assert body["processing_state"] == "error"
            assert body["processing_error"].startswith("Could not start the transcode")
            assert "404" in body["processing_error"]
            assert _row(app, body["id"]).processing_state == "error"
    finally:
        app.state.engine.dispose()
