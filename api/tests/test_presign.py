"""Presigned GET URLs signed here: the same bytes as botocore's, one URL per signing window,
and honoured by real MinIO (and refused by it once expired)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import botocore.auth
import httpx
import pytest
from videoflix_api.config import Settings
from videoflix_api.services.storage import (
    MAX_SIGNING_WINDOW_SECONDS,
    S3Storage,
    SigV4Presigner,
    signed_at_and_expires,
    signing_window,
)

WEEK = 7 * 24 * 3600
NOW = 1_764_631_445.7  # 2025-12-01T23:24:05.7Z


def test_window_is_a_tenth_of_the_lifetime_at_most_five_minutes() -> None:
    assert signing_window(5) == 1
    assert signing_window(15) == 1
    assert signing_window(600) == 60
    assert signing_window(14_702) == MAX_SIGNING_WINDOW_SECONDS == 300
    assert signing_window(WEEK) == 300


@pytest.mark.parametrize("expires_in", [15, 600, 14_702])
def test_one_url_per_window_each_valid_at_least_as_asked(expires_in: int) -> None:
    window = signing_window(expires_in)
    start = int(NOW) - int(NOW) % window
    signed = {signed_at_and_expires(now, expires_in) for now in (start, start + window - 0.01)}
    assert signed == {(start, expires_in + window)}
    for now in (start, start + window / 2, start + window - 0.01):
        signed_at, expires = signed_at_and_expires(now, expires_in)
        assert expires_in <= signed_at + expires - now <= expires_in + window
    assert signed_at_and_expires(start + window, expires_in)[0] == start + window


def test_never_beyond_sigv4s_seven_days() -> None:
    signed_at, expires = signed_at_and_expires(NOW, WEEK)
    assert expires == WEEK
    assert signed_at + expires - NOW >= WEEK - MAX_SIGNING_WINDOW_SECONDS


def _settings(style: str, endpoint: str | None) -> Settings:
    return Settings(
        dev_mode=True,
        s3_endpoint_url=endpoint,
        s3_bucket="bench",
        s3_access_key_id="AKIDEXAMPLE",
        s3_secret_access_key="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        s3_region="eu-west-1",
        s3_addressing_style=style,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("style", "endpoint"),
    [("path", "http://127.0.0.1:9000"), ("virtual", "https://s3.example.com"), ("auto", None)],
)
def test_same_bytes_as_botocore(
    style: str, endpoint: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = S3Storage(_settings(style, endpoint), clock=lambda: NOW)
    signed_at, expires = signed_at_and_expires(NOW, 14_702)
    # botocore signs at its own clock: set to the window's start for the comparison.
    at = datetime.fromtimestamp(signed_at, UTC).replace(tzinfo=None)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: at)
    for key in ("videos/1/720p/video.mp4", "videos/2/a b+c~d=é&x?.mp4"):
        ours = storage.url(key, expires_in=14_702)
        theirs = storage.client.generate_presigned_url(
            "get_object", Params={"Bucket": "bench", "Key": key}, ExpiresIn=expires
        )
        assert ours == theirs


def test_temporary_credentials_are_left_to_botocore() -> None:
    probe = (
        "https://b.s3.amazonaws.com/probe?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=AK%2F20261201%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20261201T000000Z"
        "&X-Amz-Expires=60&X-Amz-SignedHeaders=host&X-Amz-Security-Token=t&X-Amz-Signature=0"
    )
    assert SigV4Presigner.from_botocore_url(probe, "secret") is None
    plain = probe.replace("&X-Amz-Security-Token=t", "")
    presigner = SigV4Presigner.from_botocore_url(plain, "secret")
    assert presigner is not None
    assert (presigner.prefix, presigner.host, presigner.region) == (
        "https://b.s3.amazonaws.com/",
        "b.s3.amazonaws.com",
        "us-east-1",
    )


def test_minio_serves_a_url_signed_at_its_windows_start_and_refuses_it_expired(
    settings: Settings, minio_server: Any, s3_bucket: str
) -> None:
    minio_server.client().put_object(Bucket=s3_bucket, Key="videos/1/a b.mp4", Body=b"media")
    now = time.time()
    late_in_window = S3Storage(settings, clock=lambda: now)
    url = late_in_window.url("videos/1/a b.mp4", expires_in=3000)
    # Signed at the start of the window (up to five minutes ago), and still accepted.
    assert url == S3Storage(settings, clock=lambda: now - now % 300).url(
        "videos/1/a b.mp4", expires_in=3000
    )
    fetched = httpx.get(url, headers={"Range": "bytes=0-2"})
    assert (fetched.status_code, fetched.content) == (206, b"med")

    # A wrong signature is refused: MinIO checks what is signed here.
    assert httpx.get(url[:-4] + "0000").status_code == 403
    # Signed an hour ago for ten minutes (+ its minute of window): expired, refused.
    expired = S3Storage(settings, clock=lambda: now - 3600).url("videos/1/a b.mp4", expires_in=600)
    assert httpx.get(expired).status_code == 403
