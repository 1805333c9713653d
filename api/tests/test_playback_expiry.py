"""How long playback URLs live: the pure rule, and every endpoint that hands one out using it
(progressive URL, file redirect, HLS media playlist, storyboard sprite) against real MinIO."""

from __future__ import annotations

import calendar
import math
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from videoflix_api.config import Settings
from videoflix_api.services.playback import SIGV4_MAX_EXPIRY_SECONDS, playback_expiry
from videoflix_api.services.storage import signing_window
from videoflix_core.db import Video

from .conftest import BASE, Media, build_app, login, make_user, put_ready_video

WEEK = 7 * 24 * 3600


def _settings(**fields: Any) -> Settings:
    return Settings(dev_mode=True, **fields)


def test_short_video_lives_its_length_plus_margin_and_pauses() -> None:
    settings = _settings(presign_expiry_seconds=300, playback_pause_seconds=4 * 3600)
    assert playback_expiry(60.0, settings) == 60 + 300 + 4 * 3600


def test_defaults_cover_a_short_clip_with_four_hours_of_pauses() -> None:
    assert playback_expiry(10.0, _settings()) == 10 + 300 + 4 * 3600


def test_long_video_outlives_the_old_fixed_five_minutes() -> None:
    settings = _settings(presign_expiry_seconds=15, playback_pause_seconds=0)
    three_hours = 3 * 3600 + 0.2
    # A partial second is rounded up: the last frame must still be fetchable.
    assert playback_expiry(three_hours, settings) == 3 * 3600 + 1 + 15
    assert playback_expiry(three_hours, settings) > three_hours


@pytest.mark.parametrize("duration", [None, 0.0, -3.0, math.nan, math.inf])
def test_unknown_duration_gets_the_longest_lifetime(duration: float | None) -> None:
    assert playback_expiry(duration, _settings()) == WEEK
    assert playback_expiry(duration, _settings(playback_expiry_max_seconds=86400)) == 86400


def test_capped_at_seven_days_and_at_the_setting() -> None:
    month = 30 * 24 * 3600.0
    assert playback_expiry(month, _settings()) == SIGV4_MAX_EXPIRY_SECONDS == WEEK
    capped = _settings(playback_expiry_max_seconds=6 * 3600)
    assert playback_expiry(3 * 3600, capped) == 6 * 3600
    assert playback_expiry(600, capped) == 600 + 300 + 4 * 3600


def test_settings_refuse_lifetimes_sigv4_would_refuse() -> None:
    with pytest.raises(ValidationError):
        _settings(playback_expiry_max_seconds=WEEK + 1)
    with pytest.raises(ValidationError):
        _settings(playback_pause_seconds=-1)


def _lives_for(url: str, seconds: int) -> bool:
    """Whether `url` stays valid at least `seconds` from now, and at most one signing window
    longer (it was signed at its window's start, for the lifetime plus the window)."""
    query = parse_qs(urlsplit(url).query)
    signed_at = calendar.timegm(time.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ"))
    left = signed_at + int(query["X-Amz-Expires"][0]) - time.time()
    # A second of slack: the request was answered a moment before this check.
    return seconds - 1 <= left <= seconds + signing_window(seconds)


def test_every_playback_endpoint_presigns_for_the_whole_viewing(
    settings: Settings, minio_server: Any, s3_bucket: str, media: Media
) -> None:
    app = build_app(
        settings.model_copy(update={"presign_expiry_seconds": 15, "playback_pause_seconds": 100})
    )
    try:
        with TestClient(app, base_url=BASE) as client:
            login(client, make_user(app, "long@example.com"))
            video_id = put_ready_video(app, minio_server, s3_bucket, media)
            with app.state.sessionmaker() as session:
                video = session.get(Video, video_id)
                assert video is not None
                video.duration_seconds = 2 * 3600 + 0.5  # as the probe reports a 2 h film
                session.commit()
            whole_viewing = 2 * 3600 + 1 + 15 + 100

            progressive = client.get(f"/content/video-url/{video_id}/").json()["url"]
            assert _lives_for(progressive, whole_viewing)
            assert httpx.get(progressive, headers={"Range": "bytes=0-7"}).status_code == 206

            redirect = client.get(f"/videos/{video_id}/file/", follow_redirects=False)
            assert redirect.status_code == 302
            assert _lives_for(redirect.headers["location"], whole_viewing)
            # A cached redirect must never outlive its target's shortest possible lifetime.
            assert redirect.headers["cache-control"] == "private, max-age=7"

            playlist = client.get(f"/videos/{video_id}/hls/120p/index.m3u8")
            assert playlist.status_code == 200
            uris = {line for line in playlist.text.splitlines() if line.startswith("http")}
            assert len(uris) == 1, playlist.text
            assert all(_lives_for(u, whole_viewing) for u in uris)
            assert playlist.headers["cache-control"] == "private, max-age=7"

            # The poster is fetched once: it keeps the short base lifetime.
            poster = client.get(f"/videos/{video_id}/thumbnail/", follow_redirects=False)
            assert _lives_for(poster.headers["location"], 15)
    finally:
        app.state.engine.dispose()
