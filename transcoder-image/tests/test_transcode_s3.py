"""The same flows against a real S3-compatible server (MinIO from the shared fixtures)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from videoflix_transcoder.errors import TransientError
from videoflix_transcoder.storage import Location, Storage


def upload(minio_server: Any, bucket: str, path: Path, key: str) -> None:
    minio_server.client().upload_file(str(path), bucket, key)


def content_types(minio_server: Any, bucket: str, keys: list[str]) -> dict[str, str]:
    client = minio_server.client()
    return {k: client.head_object(Bucket=bucket, Key=k)["ContentType"] for k in keys}


def test_probe_ladder_and_thumbnail_through_s3(
    minio_server: Any, s3_bucket: str, sources: Any, tx: Any, tmp_path: Path
) -> None:
    env = minio_server.env(s3_bucket)
    source_key = "videos/5/source/clip.mov"
    upload(minio_server, s3_bucket, sources.sd, source_key)
    source, dest = f"s3://{s3_bucket}/{source_key}", f"s3://{s3_bucket}/videos/5/"

    results = "videos/5/results/0-abcd"
    probe = tx.transcoder("probe", "--source", source,
                          "--result-to", f"s3://{s3_bucket}/{results}/probe.json", env=env)
    assert probe.code == 0 and (probe.result["width"], probe.result["height"]) == (854, 480)

    run = tx.transcoder("ladder", "--source", source, "--dest", dest,
                        "--rung", "120p:214x120", "--rung", "360p:640x360",
                        "--result-to", f"s3://{s3_bucket}/{results}/ladder.json", env=env)
    assert run.code == 0, run.stderr
    # The result also lands in storage (what a lost pod's termination message said), in full.
    for step, reported in (("probe", probe.result), ("ladder", run.result)):
        body = minio_server.client().get_object(Bucket=s3_bucket, Key=f"{results}/{step}.json")
        assert json.loads(body["Body"].read()) == reported
        assert body["ContentType"] == "application/json"
    assert [(r["name"], r["file"], r["playlist"]) for r in run.result["renditions"]] == [
        ("120p", "videos/5/120p/video.mp4", "videos/5/120p/index.m3u8"),
        ("360p", "videos/5/360p/video.mp4", "videos/5/360p/index.m3u8"),
    ]
    thumbs = tx.transcoder("thumbnail", "--source", source, "--dest", dest.rstrip("/"), env=env)
    assert thumbs.code == 0, thumbs.stderr
    assert thumbs.result == {"poster": "videos/5/thumbnails/poster.jpg",
                             "sprite": "videos/5/thumbnails/sprite.jpg",
                             "vtt": "videos/5/thumbnails/storyboard.vtt"}

    assert content_types(minio_server, s3_bucket, sorted(minio_server.keys(s3_bucket))) == {
        source_key: "binary/octet-stream",
        "videos/5/120p/index.m3u8": "application/vnd.apple.mpegurl",
        "videos/5/120p/video.mp4": "video/mp4",
        "videos/5/360p/index.m3u8": "application/vnd.apple.mpegurl",
        "videos/5/360p/video.mp4": "video/mp4",
        "videos/5/thumbnails/poster.jpg": "image/jpeg",
        "videos/5/thumbnails/sprite.jpg": "image/jpeg",
        "videos/5/thumbnails/storyboard.vtt": "text/vtt",
        f"{results}/probe.json": "application/json",
        f"{results}/ladder.json": "application/json",
    }
    # What landed in S3 is the complete file: same size, plays, and its playlist fits it.
    rendition = run.result["renditions"][1]
    local = tmp_path / "360p"
    local.mkdir()
    client = minio_server.client()
    client.download_file(s3_bucket, rendition["file"], str(local / "video.mp4"))
    client.download_file(s3_bucket, rendition["playlist"], str(local / "index.m3u8"))
    assert (local / "video.mp4").stat().st_size == rendition["bytes"]
    video = tx.streams(local / "video.mp4")["video"]
    assert (video["width"], video["height"]) == (640, 360)
    played = tx.ffprobe(local / "index.m3u8", "-show_entries", "format=duration")
    assert float(played["format"]["duration"]) == pytest.approx(2.0, abs=0.1)


def test_bad_or_missing_source_leaves_nothing(
    minio_server: Any, s3_bucket: str, sources: Any, tx: Any
) -> None:
    env = minio_server.env(s3_bucket)
    upload(minio_server, s3_bucket, sources.truncated_faststart, "videos/6/source/x.mp4")
    rendition = ["rendition", "--name", "120p", "--width", "214", "--height", "120"]
    for command in (rendition, ["thumbnail"]):
        run = tx.transcoder(command[0], "--source", f"s3://{s3_bucket}/videos/6/source/x.mp4",
                            "--dest", f"s3://{s3_bucket}/videos/6/", *command[1:],
                            "--result-to", f"s3://{s3_bucket}/videos/6/results/0-a/x.json",
                            env=env)
        assert run.code == 2 and "truncated" in run.result["error"]
    run = tx.transcoder("probe", "--source", f"s3://{s3_bucket}/videos/6/source/gone.mp4",
                        "--result-to", f"s3://{s3_bucket}/videos/6/results/0-a/probe.json",
                        env=env)
    assert run.code == 2 and "source not found" in run.result["error"]
    # Failures store no result: the Job's own verdict says they failed.
    assert minio_server.keys(s3_bucket) == ["videos/6/source/x.mp4"]


def test_unreachable_storage_is_transient(sources: Any, tx: Any) -> None:
    env = {"VIDEOFLIX_S3_ENDPOINT_URL": "http://127.0.0.1:9", "VIDEOFLIX_S3_ACCESS_KEY_ID": "a",
           "VIDEOFLIX_S3_SECRET_ACCESS_KEY": "b"}
    run = tx.transcoder("probe", "--source", "s3://media/videos/1/source/a.mp4", env=env)
    assert run.code == 1 and "downloading the source failed" in run.result["error"]


def test_failed_publish_removes_what_was_uploaded(
    minio_server: Any, s3_bucket: str, tmp_path: Path
) -> None:
    media = tmp_path / "video.mp4"
    media.write_bytes(b"\0" * 1000)
    storage = Storage(minio_server.env(s3_bucket))
    dest = Location(s3_bucket, "videos/9/")
    # S3 refuses keys longer than 1024 bytes: the second upload fails after the first landed.
    with pytest.raises(TransientError, match="uploading"):
        storage.publish([(media, "720p/video.mp4"), (media, "x" * 1100 + ".m3u8")], dest)
    assert minio_server.keys(s3_bucket) == []
    assert storage.publish([(media, "720p/video.mp4")], dest) == ["videos/9/720p/video.mp4"]
