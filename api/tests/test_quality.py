"""`/content/video-url/<id>/?quality=` for the unchanged client, which asks by bandwidth alone."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from videoflix_api.services.videos import playable_quality
from videoflix_core.db import Video

from .conftest import Media, live_login, make_user, put_ready_video, serve


def rungs(*names: str, unfinished: tuple[str, ...] = ()) -> dict[str, Any]:
    converted: dict[str, Any] = {
        name: {"height": int(name[:-1]), "file": f"videos/1/{name}/video.mp4"} for name in names
    }
    for name in unfinished:
        converted[name] = {"height": int(name[:-1])}
    return converted


@pytest.mark.parametrize(
    ("converted", "asked", "served"),
    [
        (rungs("120p", "360p", "720p"), "720p", "720p"),
        (rungs("120p", "360p", "720p"), "1080p", "720p"),  # the issue: a 720p source
        (rungs("120p", "360p", "720p"), "480p", "360p"),
        (rungs("360p", "720p"), "120p", "360p"),  # none lower: the lowest there is
        (rungs("120p", "360p", "720p"), None, "720p"),
        (rungs("120p", unfinished=("720p",)), "720p", "120p"),  # no file yet: not playable
        (rungs("1080p", "120p", "360p"), "720p", "360p"),  # by lines, not by name order
        ({}, "720p", None),
        (rungs(unfinished=("360p",)), None, None),
    ],
)
def test_playable_quality(converted: dict[str, Any], asked: str | None, served: str | None) -> None:
    assert playable_quality(converted, asked) == served


def test_portrait_rungs_are_compared_by_their_name() -> None:
    # A portrait 720x1280 phone video: 720p's displayed height is 1280, its rung is 720.
    portrait = {
        "360p": {"height": 640, "file": "a"},
        "720p": {"height": 1280, "file": "b"},
    }
    assert playable_quality(portrait, "1080p") == "720p"
    assert playable_quality(portrait, "480p") == "360p"


def test_video_url_falls_back_over_http(
    app: FastAPI, minio_server: Any, s3_bucket: str, media: Media
) -> None:
    video_id = put_ready_video(app, minio_server, s3_bucket, media)
    with app.state.sessionmaker() as session:
        video = session.get(Video, video_id)
        assert video is not None
        # A 720p source: 120p, 360p and 720p (the same real file behind each, for the fetch).
        base = dict(video.converted_files["120p"])
        video.converted_files = {
            name: {**base, "height": int(name[:-1])} for name in ("120p", "360p", "720p")
        }
        session.commit()
    with app.state.sessionmaker() as session:
        waiting = Video(title="Still transcoding", description="", category="")
        session.add(waiting)
        session.commit()
        waiting_id = waiting.id

    with serve(app) as url, httpx.Client(base_url=url) as client:
        cookies = live_login(url, make_user(app, "player@example.com"))
        client.headers["Cookie"] = f"vf_access={cookies['vf_access']}"

        for asked, served in (("1080p", "720p"), ("720p", "720p"), ("480p", "360p")):
            r = client.get(f"/content/video-url/{video_id}/", params={"quality": asked})
            assert r.status_code == 200, r.text
            assert r.json()["quality"] == served and r.headers["x-videoflix-quality"] == served
        fetched = httpx.get(r.json()["url"])
        assert fetched.status_code == 200 and fetched.content == media.rendition_mp4.read_bytes()

        r = client.get(f"/content/video-url/{waiting_id}/", params={"quality": "720p"})
        assert r.status_code == 404 and r.json() == {"detail": "This video is not playable yet."}
        assert client.get(f"/content/video-url/{video_id}/?quality=../etc").status_code == 400


def test_openapi_names_the_served_quality(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    video_url = spec["components"]["schemas"]["VideoUrl"]
    assert set(video_url["required"]) == {"url", "quality"}
    assert "X-Videoflix-Quality" in video_url["properties"]["quality"]["description"]
    operation = spec["paths"]["/content/video-url/{video_id}/"]["get"]
    assert "at or below" in operation["description"] and "404" in operation["responses"]
