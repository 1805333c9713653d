"""The pure decisions behind the routes, tested directly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError
from videoflix_api import security
from videoflix_api.config import DEV_SECRET_KEY, Settings
from videoflix_api.errors import validation_errors
from videoflix_api.ratelimit import retry_after, storage_key
from videoflix_api.services import playback
from videoflix_api.services.accounts import registration_problems
from videoflix_api.services.videos import (
    InvalidCursor,
    best_rendition,
    decode_cursor,
    encode_cursor,
)

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
SECRET = "s" * 48
BASE_URL = "https://api.videoflix.test"


def test_default_secret_is_refused_outside_dev_mode() -> None:
    with pytest.raises(ValidationError, match="built-in development key"):
        Settings(dev_mode=False)
    with pytest.raises(ValidationError, match="at least 32"):
        Settings(dev_mode=False, secret_key="short")
    with pytest.raises(ValidationError, match="SameSite=None"):
        Settings(dev_mode=False, secret_key=SECRET, cookie_samesite="none", cookie_secure=False)
    assert Settings(dev_mode=True).secret_key.get_secret_value() == DEV_SECRET_KEY
    with pytest.raises(ValidationError, match="VIDEOFLIX_PUBLIC_BASE_URL is required"):
        Settings(dev_mode=False, secret_key=SECRET)
    assert Settings(dev_mode=False, secret_key=SECRET, public_base_url=BASE_URL).dev_mode is False


def test_settings_come_from_videoflix_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIDEOFLIX_SECRET_KEY", SECRET)
    monkeypatch.setenv("VIDEOFLIX_PUBLIC_BASE_URL", BASE_URL)
    monkeypatch.setenv("VIDEOFLIX_S3_BUCKET", "media")
    monkeypatch.setenv("VIDEOFLIX_CORS_ORIGINS", '["https://a.example/"]')
    settings = Settings()
    assert settings.s3_bucket == "media"
    assert settings.allowed_origins == ["http://localhost:4200", "https://a.example"]
    assert settings.transcode_strategy == "PerRendition"
    monkeypatch.setenv("VIDEOFLIX_TRANSCODE_STRATEGY", "SinglePass")
    assert Settings().transcode_strategy == "SinglePass"
    monkeypatch.setenv("VIDEOFLIX_TRANSCODE_STRATEGY", "singlepass")
    with pytest.raises(ValidationError, match="PerRendition"):
        Settings()
    monkeypatch.delenv("VIDEOFLIX_TRANSCODE_STRATEGY")
    monkeypatch.setenv("VIDEOFLIX_FRONTEND_URL", "not a url")
    with pytest.raises(ValidationError):
        Settings()


def test_tokens_round_trip_and_expire() -> None:
    token, claims = security.create_token(
        SECRET,
        user_id=7,
        token_type="refresh",
        now=NOW,
        lifetime=timedelta(minutes=5),
        family="fam",
    )
    decoded = security.decode_token(SECRET, token, "refresh", now=NOW + timedelta(minutes=4))
    assert decoded == claims and decoded.family == "fam"
    with pytest.raises(security.InvalidToken, match="expired"):
        security.decode_token(SECRET, token, "refresh", now=NOW + timedelta(minutes=5))
    with pytest.raises(security.InvalidToken, match="type"):
        security.decode_token(SECRET, token, "access", now=NOW)
    with pytest.raises(security.InvalidToken):
        security.decode_token("t" * 48, token, "refresh", now=NOW)
    with pytest.raises(security.InvalidToken):
        security.decode_token(SECRET, token[:-2], "refresh", now=NOW)


def test_passwords_are_argon2id() -> None:
    hashed = security.hash_password("correct horse")
    assert hashed.startswith("$argon2id$")
    assert security.verify_password(hashed, "correct horse")
    assert not security.verify_password(hashed, "wrong horse")
    assert not security.verify_password(None, "correct horse")
    assert not security.verify_password("garbage", "x")


def test_password_rules() -> None:
    assert security.password_problems("12345678901")
    assert security.password_problems("short")
    assert security.password_problems("me@example.com", "me@example.com")
    assert security.password_problems("a decent passphrase") == []
    errors = registration_problems("me@example.com", "a decent passphrase", "other")
    assert errors == {"confirm_password": ["Passwords do not match."]}


def test_single_use_tokens_store_only_a_digest() -> None:
    token, digest = security.new_single_use_token()
    assert len(token) >= 40 and digest == security.hash_single_use_token(token)
    assert token not in digest


@pytest.mark.parametrize(
    ("method", "origin", "referer", "cookie", "refused"),
    [
        ("POST", "https://evil.example", None, True, True),
        ("POST", "https://app.example", None, True, False),
        ("POST", "https://api.example", None, True, False),
        ("POST", "null", None, True, True),
        ("POST", None, "https://evil.example/x", True, True),
        ("POST", None, "https://app.example/watch/1", True, False),
        ("POST", None, None, True, True),  # cookies, but no origin named
        ("POST", None, None, False, False),  # an API client without cookies
        ("POST", "https://evil.example", None, False, True),  # login CSRF
        ("GET", "https://evil.example", None, True, False),
        ("DELETE", "https://app.example.evil.example", None, True, True),
    ],
)
def test_csrf_decision(
    method: str, origin: str | None, referer: str | None, cookie: bool, refused: bool
) -> None:
    reason = security.csrf_violation(
        method,
        origin=origin,
        referer=referer,
        own_origin="https://api.example",
        trusted_origins=["https://app.example"],
        has_auth_cookie=cookie,
    )
    assert (reason is not None) == refused


def test_rate_limit_decision() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    ends = now + timedelta(seconds=60)
    assert retry_after(1, 2, ends, now) is None
    assert retry_after(2, 2, ends, now) is None  # the limit itself is allowed
    assert retry_after(3, 2, ends, now) == 60
    # Rounded up to whole seconds, never 0 (a client must not retry at once).
    assert retry_after(3, 2, ends, now + timedelta(seconds=59.5)) == 1
    assert retry_after(3, 2, ends, now + timedelta(seconds=0.2)) == 60
    assert retry_after(9, 2, ends, ends) == 1


def test_rate_limit_storage_keys_fit_and_stay_distinct() -> None:
    assert storage_key("login:203.0.113.7") == "login:203.0.113.7"
    long_a, long_b = "login-email:" + "a" * 300, "login-email:" + "a" * 299 + "b"
    assert len(storage_key(long_a)) <= 255
    assert storage_key(long_a) != storage_key(long_b)
    assert storage_key(long_a) == storage_key(long_a)


def test_validation_errors_are_drf_shaped() -> None:
    errors = [
        {"type": "missing", "loc": ("body", "email"), "msg": "Field required"},
        {"type": "string_too_long", "loc": ("body", "title"), "msg": "String should have at most"},
        {"type": "int_parsing", "loc": ("query", "limit"), "msg": "Input should be an integer"},
        {"type": "json_invalid", "loc": ("body", 3), "msg": "JSON decode error"},
        {"type": "value_error", "loc": ("body",), "msg": "Value error, Bad things"},
    ]
    assert validation_errors(errors) == {
        "email": ["This field is required."],
        "title": ["String should have at most"],
        "limit": ["Input should be an integer"],
        "non_field_errors": ["Invalid JSON body.", "Bad things"],
    }


def test_cursor_round_trip_and_garbage() -> None:
    cursor = encode_cursor(NOW, 42)
    assert decode_cursor(cursor) == (NOW, 42)
    for bad in ("", "!!!", "e30", encode_cursor(NOW, 1)[:-3]):
        with pytest.raises(InvalidCursor):
            decode_cursor(bad)


def test_best_rendition() -> None:
    assert best_rendition({}) is None
    assert (
        best_rendition({"120p": {"height": 120}, "720p": {"height": 720}, "360p": {"height": 360}})
        == "720p"
    )


PLAYLIST = """#EXTM3U
#EXT-X-VERSION:7
#EXT-X-TARGETDURATION:2
#EXT-X-PLAYLIST-TYPE:VOD
#EXT-X-MAP:URI="video.mp4",BYTERANGE="812@0"
#EXTINF:2.000000,
#EXT-X-BYTERANGE:10000@812
video.mp4
#EXTINF:1.000000,
#EXT-X-BYTERANGE:5000@10812
video.mp4
#EXT-X-ENDLIST
"""


def test_media_playlist_rewrite_presigns_once() -> None:
    calls: list[str] = []

    def resolve(uri: str) -> str:
        calls.append(uri)
        return f"https://s3.example/b/videos/1/720p/{uri}?sig=abc"

    out = playback.rewrite_media_playlist(PLAYLIST, resolve)
    assert calls == ["video.mp4"]
    url = "https://s3.example/b/videos/1/720p/video.mp4?sig=abc"
    assert f'#EXT-X-MAP:URI="{url}",BYTERANGE="812@0"' in out
    assert out.count(f"\n{url}\n") == 2
    assert "#EXT-X-BYTERANGE:5000@10812" in out and out.endswith("#EXT-X-ENDLIST\n")


def test_media_key_refuses_escapes() -> None:
    key = "videos/1/720p/index.m3u8"
    assert playback.media_key(key, "video.mp4") == "videos/1/720p/video.mp4"
    assert playback.media_key(key, "../../2/720p/video.mp4") is None
    assert playback.media_key(key, "/etc/passwd") is None
    assert playback.media_key(key, "https://elsewhere/x.mp4") is None


def test_master_playlist() -> None:
    text = playback.master_playlist(
        {
            "720p": {"width": 1280, "height": 720, "bitrate": 2_500_000},
            "120p": {"width": 214, "height": 120, "bytes": 100_000, "durationSeconds": 8},
        },
        lambda name: f"{name}/index.m3u8",
    )
    lines = text.splitlines()
    assert lines[0] == "#EXTM3U"
    assert lines[3] == (
        '#EXT-X-STREAM-INF:BANDWIDTH=100000,AVERAGE-BANDWIDTH=100000,RESOLUTION=214x120,NAME="120p"'
    )
    assert lines[4] == "120p/index.m3u8"
    assert lines[5].startswith(
        "#EXT-X-STREAM-INF:BANDWIDTH=2500000,AVERAGE-BANDWIDTH=2500000,RESOLUTION=1280x720"
    )


def test_master_playlist_peak_average_and_codecs() -> None:
    text = playback.master_playlist(
        {
            "360p": {
                "width": 640,
                "height": 360,
                "bitrate": 800_000,
                "peakBitrate": 1_100_000,
                "codecs": "avc1.64001e,mp4a.40.2",
            },
            # Peaks order the variants: this one averages less but peaks higher.
            "480p": {"width": 854, "height": 480, "bitrate": 700_000, "peakBitrate": 1_300_000},
            # A peak below the average (tiny files: the average counts the init segment) never
            # makes BANDWIDTH < AVERAGE-BANDWIDTH; a codecs value that could break out of the
            # quoted attribute is left out.
            "120p": {
                "width": 214,
                "height": 120,
                "bitrate": 90_000,
                "peakBitrate": 80_000,
                "codecs": 'avc1.64000c"\n#EXT-X-ENDLIST',
            },
        },
        lambda name: f"{name}/index.m3u8",
    )
    stream = [line for line in text.splitlines() if line.startswith("#EXT-X-STREAM-INF:")]
    assert stream == [
        '#EXT-X-STREAM-INF:BANDWIDTH=90000,AVERAGE-BANDWIDTH=90000,RESOLUTION=214x120,NAME="120p"',
        "#EXT-X-STREAM-INF:BANDWIDTH=1100000,AVERAGE-BANDWIDTH=800000,"
        'CODECS="avc1.64001e,mp4a.40.2",RESOLUTION=640x360,NAME="360p"',
        "#EXT-X-STREAM-INF:BANDWIDTH=1300000,AVERAGE-BANDWIDTH=700000,RESOLUTION=854x480,"
        'NAME="480p"',
    ]
    assert "ENDLIST" not in text


STORYBOARD = """WEBVTT

NOTE written by the transcoder --> relative references

00:00:00.000 --> 00:00:02.000
sprite.jpg#xywh=0,0,160,90

cue-2
00:00:02.000 --> 00:00:04.000
sprite.jpg#xywh=160,0,160,90

00:00:04.000 --> 00:00:05.500
../../2/thumbnails/sprite.jpg#xywh=320,0,160,90
"""


def test_rewrite_storyboard_vtt() -> None:
    calls: list[str] = []

    def resolve(uri: str) -> str:
        calls.append(uri)
        key = playback.media_key("videos/1/thumbnails/storyboard.vtt", uri)
        return uri if key is None else f"https://s3.test/{key}?X-Amz-Signature=abc&x=1"

    out = playback.rewrite_storyboard_vtt(STORYBOARD, resolve)
    signed = "https://s3.test/videos/1/thumbnails/sprite.jpg?X-Amz-Signature=abc&x=1"
    assert out.splitlines() == [
        "WEBVTT",
        "",
        "NOTE written by the transcoder --> relative references",
        "",
        "00:00:00.000 --> 00:00:02.000",
        f"{signed}#xywh=0,0,160,90",
        "",
        "cue-2",
        "00:00:02.000 --> 00:00:04.000",
        f"{signed}#xywh=160,0,160,90",
        "",
        "00:00:04.000 --> 00:00:05.500",
        # A reference leaving the video's folder is not presigned (it resolves to nothing).
        "../../2/thumbnails/sprite.jpg#xywh=320,0,160,90",
    ]
    assert calls == ["sprite.jpg", "../../2/thumbnails/sprite.jpg"]  # one presign per URI
    # CRLF line endings and a byte order mark are read the same way.
    crlf = "\ufeff" + STORYBOARD.replace("\n", "\r\n")
    assert playback.rewrite_storyboard_vtt(crlf, resolve) == out
