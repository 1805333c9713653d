"""Playback of what the real transcoder wrote to MinIO: the master playlist's BANDWIDTH /
AVERAGE-BANDWIDTH / CODECS from its rendition result, and the storyboard WebVTT served with sprite
URLs a browser can fetch from a private bucket (every URL fetched)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from videoflix_api.config import Settings
from videoflix_core.db import Video
from videoflix_core.status import converted_files, parse_result
from videoflix_core.transcode import (
    RenditionOutput,
    RenditionStatus,
    StepPhase,
    ThumbnailOutput,
    VideoTranscodeStatus,
)

from .conftest import BASE, add_video, build_app, login, make_user

CUE_IMAGE = re.compile(r"^(?P<url>\S+)#xywh=(?P<x>\d+),(?P<y>\d+),(?P<w>\d+),(?P<h>\d+)$")


def _transcode(step: list[str], minio: Any, bucket: str, scratch: Path) -> dict[str, Any]:
    """One transcoder step against MinIO, exactly as a Job pod runs it; its result JSON."""
    scratch.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [sys.executable, "-m", "videoflix_transcoder", *step],
        env={
            **os.environ,
            **minio.env(bucket),
            "VIDEOFLIX_SCRATCH_DIR": str(scratch),
            "VIDEOFLIX_RESULT_FILE": str(scratch / "result.json"),
        },
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = parse_result(proc.stdout)
    assert result is not None, proc.stdout[-2000:]
    return result


@pytest.fixture
def transcoded(
    app: FastAPI, minio_server: Any, s3_bucket: str, tmp_path: Path
) -> tuple[int, dict[str, Any]]:
    """A video whose 120p rendition and thumbnails the transcoder really produced, its row filled
    the way the operator fills it (the result through `converted_files`)."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed (apt-get install ffmpeg)")
    source = tmp_path / "source.mp4"
    subprocess.run(
        [
            "ffmpeg", "-nostdin", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25",
            "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
            "-t", "7", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
            "-c:a", "aac", str(source),
        ],
        check=True,
        timeout=120,
    )  # fmt: skip
    video_id = add_video(app)
    prefix = f"videos/{video_id}/"
    minio_server.client().upload_file(str(source), s3_bucket, prefix + "source/source.mp4")
    src, dest = f"s3://{s3_bucket}/{prefix}source/source.mp4", f"s3://{s3_bucket}/{prefix}"
    rendition = _transcode(
        ["rendition", "--source", src, "--dest", dest, "--name", "120p", "--width", "160",
         "--height", "120"],
        minio_server,
        s3_bucket,
        tmp_path / "rendition",
    )
    thumbs = ThumbnailOutput.model_validate(
        _transcode(
            ["thumbnail", "--source", src, "--dest", dest],
            minio_server,
            s3_bucket,
            tmp_path / "thumbnail",
        )
    )
    [entry] = rendition["renditions"]
    status = VideoTranscodeStatus(
        renditions={
            "120p": RenditionStatus(
                phase=StepPhase.SUCCEEDED,
                height=120,
                output=RenditionOutput.model_validate(entry),
            )
        }
    )
    files = converted_files(status)
    with app.state.sessionmaker() as session:
        video = session.get(Video, video_id)
        assert video is not None
        video.processing_state = "ready"
        video.converted_files = files
        video.thumbnail_key, video.sprite_key = thumbs.poster, thumbs.sprite
        video.storyboard_key = thumbs.vtt
        session.commit()
    return video_id, files["120p"]


def test_master_playlist_carries_peak_average_and_codecs(
    viewer_client: TestClient, transcoded: tuple[int, dict[str, Any]]
) -> None:
    video_id, info = transcoded
    # What the transcoder measured made it into the row.
    assert isinstance(info["peakBitrate"], int) and info["peakBitrate"] >= info["bitrate"] > 0
    assert re.fullmatch(r"avc1\.64[0-9a-f]{4},mp4a\.40\.2", info["codecs"]), info["codecs"]

    r = viewer_client.get(f"/videos/{video_id}/hls/master.m3u8")
    assert r.status_code == 200
    [stream] = [line for line in r.text.splitlines() if line.startswith("#EXT-X-STREAM-INF:")]
    assert stream == (
        f"#EXT-X-STREAM-INF:BANDWIDTH={info['peakBitrate']},"
        f"AVERAGE-BANDWIDTH={info['bitrate']},"
        f'CODECS="{info["codecs"]}",'
        f"RESOLUTION={info['width']}x{info['height']},"
        'NAME="120p"'
    )
    assert (info["width"], info["height"]) == (160, 120)
    # The variant it names really plays: its media playlist resolves to the file.
    media = viewer_client.get(f"/videos/{video_id}/hls/120p/index.m3u8")
    url = next(line for line in media.text.splitlines() if line and not line.startswith("#"))
    assert httpx.get(url, headers={"Range": "bytes=0-7"}).status_code == 206


def _cue_images(vtt: str) -> list[re.Match[str]]:
    return [m for line in vtt.splitlines() if (m := CUE_IMAGE.match(line))]


def test_storyboard_vtt_points_at_fetchable_sprite_urls(
    viewer_client: TestClient,
    transcoded: tuple[int, dict[str, Any]],
    minio_server: Any,
    s3_bucket: str,
) -> None:
    video_id, _ = transcoded
    prefix = f"videos/{video_id}/thumbnails/"
    original = minio_server.client().get_object(Bucket=s3_bucket, Key=prefix + "storyboard.vtt")
    original_text = original["Body"].read().decode()
    original_cues = _cue_images(original_text)
    assert len(original_cues) >= 3  # a 7 s source: a tile every 2 s
    assert {m["url"] for m in original_cues} == {"sprite.jpg"}  # relative, as written

    # Fetched relative to a presigned URL, that reference is refused by a private bucket.
    vtt_url = minio_server.client().generate_presigned_url(
        "get_object", Params={"Bucket": s3_bucket, "Key": prefix + "storyboard.vtt"}
    )
    assert httpx.get(httpx.URL(vtt_url).join("sprite.jpg")).status_code == 403

    r = viewer_client.get(
        f"/videos/{video_id}/thumbnail/", params={"kind": "storyboard"}, follow_redirects=False
    )
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/vtt")
    assert r.headers["cache-control"] == "private, max-age=150"
    assert r.text.startswith("WEBVTT")
    cues = _cue_images(r.text)
    # Same cues, same timings, same tiles; only the image URL changed.
    assert [m.group("x", "y", "w", "h") for m in cues] == [
        m.group("x", "y", "w", "h") for m in original_cues
    ]
    timings = [line for line in r.text.splitlines() if "-->" in line]
    assert timings == [line for line in original_text.splitlines() if "-->" in line]
    urls = {m["url"] for m in cues}
    assert len(urls) == 1  # one presign for every cue
    for url in urls:
        assert "X-Amz-Signature=" in url and f"/{prefix}sprite.jpg?" in url
        sprite = httpx.get(url)
        assert sprite.status_code == 200
        assert sprite.headers["content-type"] == "image/jpeg"
        assert sprite.content[:2] == b"\xff\xd8"

    # The sprite and poster are still plain redirects.
    sprite_redirect = viewer_client.get(
        f"/videos/{video_id}/thumbnail/", params={"kind": "sprite"}, follow_redirects=False
    )
    assert sprite_redirect.status_code == 302
    assert httpx.get(sprite_redirect.headers["location"]).status_code == 200


def test_storyboard_uses_the_public_base_url_when_configured(
    settings: Settings,
    app: FastAPI,
    transcoded: tuple[int, dict[str, Any]],
    minio_server: Any,
    s3_bucket: str,
) -> None:
    video_id, _ = transcoded
    public = f"{minio_server.endpoint_url}/{s3_bucket}"
    minio_server.client().put_bucket_policy(
        Bucket=s3_bucket,
        Policy=(
            '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":["*"]},'
            f'"Action":["s3:GetObject"],"Resource":["arn:aws:s3:::{s3_bucket}/*"]}}]}}'
        ),
    )
    public_app = build_app(settings.model_copy(update={"s3_public_base_url": public}))
    try:
        with TestClient(public_app, base_url=BASE) as client:
            login(client, make_user(public_app, "public@example.com"))
            r = client.get(f"/videos/{video_id}/thumbnail/", params={"kind": "storyboard"})
            assert r.status_code == 200
            urls = {m["url"] for m in _cue_images(r.text)}
            assert urls == {f"{public}/videos/{video_id}/thumbnails/sprite.jpg"}
            sprite = httpx.get(urls.pop())
            assert sprite.status_code == 200 and sprite.headers["content-type"] == "image/jpeg"
    finally:
        public_app.state.engine.dispose()


def test_storyboard_missing_is_404(
    app: FastAPI, viewer_client: TestClient, minio_server: Any, s3_bucket: str
) -> None:
    no_thumbs = add_video(app)
    url = f"/videos/{no_thumbs}/thumbnail/"
    assert viewer_client.get(url, params={"kind": "storyboard"}).status_code == 404
    # A row naming an object that is gone (deleted behind our back) is a 404 too, not a 500.
    gone = add_video(app, storyboard_key=f"videos/{no_thumbs}/thumbnails/storyboard.vtt")
    r = viewer_client.get(f"/videos/{gone}/thumbnail/", params={"kind": "storyboard"})
    assert r.status_code == 404
