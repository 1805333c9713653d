"""Embedded mode and cluster mode produce the same `converted_files` for the same input.

Cluster side: the operator's own Job arguments (`videoflix_operator.builders.transcoder_args`) run
the transcoder against S3 (MinIO) exactly as a Job pod would; its termination message (the result
file) goes through `videoflix_core.status.parse_result` → `StepObservation` → `aggregate` →
`outcome`, the pure functions the operator's reconcile uses. Embedded side: the LocalDispatcher on
local storage writing the SQLite row. The full operator run on a control plane is tested in
tests/cluster by the operator's engineer.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session
from videoflix_api.embedded.dispatcher import LocalDispatcher
from videoflix_api.embedded.media import UrlSigner
from videoflix_api.embedded.storage import LocalStorage
from videoflix_api.schemas import RenditionInfo
from videoflix_core.db import Video
from videoflix_core.db.migrate import upgrade
from videoflix_core.status import (
    PROBE,
    StepObservation,
    aggregate,
    outcome,
    parse_result,
)
from videoflix_core.storage import source_key
from videoflix_core.transcode import Phase, SourceRef, VideoTranscodeSpec
from videoflix_operator.builders import transcoder_args

VIDEO_ID = 1


def _run_like_a_job(
    step: str, args: list[str], env: dict[str, str], scratch: Path
) -> StepObservation:
    """One Job pod: the container command with the pod's env; the termination message is the
    result file, read back the way the operator reads a terminated pod's message."""
    scratch.mkdir(parents=True, exist_ok=True)
    termination_log = scratch / "termination-log"
    proc = subprocess.run(
        [sys.executable, "-m", "videoflix_transcoder", *args],
        env={
            **os.environ,
            **env,
            "VIDEOFLIX_SCRATCH_DIR": str(scratch),
            "VIDEOFLIX_RESULT_FILE": str(termination_log),
        },
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    message = termination_log.read_text()
    assert len(message.encode()) <= 4096  # what Kubernetes keeps of a termination message
    return StepObservation(
        name=f"video-{VIDEO_ID}-{step.replace('/', '-')}",
        succeeded=1,
        finished="Complete",
        result=parse_result(message),
    )


def _cluster_outcome(source: Path, minio: Any, bucket: str, scratch: Path) -> Any:
    key = source_key(VIDEO_ID, source.name)
    minio.client().upload_file(str(source), bucket, key)
    spec = VideoTranscodeSpec(
        video_id=VIDEO_ID, transcode_generation=1, source=SourceRef(bucket=bucket, key=key)
    )
    steps: dict[str, StepObservation] = {}
    previous = None
    for _ in range(10):
        agg = aggregate(spec, steps, previous, now="2026-01-01T00:00:00Z")
        previous = agg.status
        if agg.status.phase in (Phase.SUCCEEDED, Phase.FAILED):
            break
        assert agg.to_start, agg.status
        for step, rungs in agg.to_start.items():
            args = transcoder_args(step, spec, rungs)
            steps[step] = _run_like_a_job(step, args, minio.env(bucket), scratch / step)
    assert previous is not None and previous.phase == Phase.SUCCEEDED, previous
    assert PROBE in steps
    return outcome(spec, previous)


def _embedded_row(source: Path, tmp_path: Path) -> Video:
    tmp_path.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    upgrade(url)
    engine = create_engine(url)
    storage = LocalStorage(tmp_path / "media", UrlSigner(b"k" * 32, "http://127.0.0.1:1"))
    try:
        with Session(engine, expire_on_commit=False) as db:
            video = Video(title="same input", converted_files={}, transcode_generation=1)
            db.add(video)
            db.flush()
            assert video.id == VIDEO_ID
            video.source_key = source_key(video.id, source.name)
            target = storage.path(video.source_key)
            target.parent.mkdir(parents=True)
            target.write_bytes(source.read_bytes())
            db.commit()
        dispatcher = LocalDispatcher(storage, engine, tmp_path / "state", max_parallel=2)
        dispatcher.start(resume=False)
        try:
            dispatcher.submit(video)
            deadline = time.monotonic() + 120
            while True:
                with Session(engine, expire_on_commit=False) as db:
                    row = db.get(Video, VIDEO_ID)
                assert row is not None
                if row.processing_state in ("ready", "error"):
                    return row
                assert time.monotonic() < deadline
                time.sleep(0.1)
        finally:
            dispatcher.stop()
    finally:
        engine.dispose()


def test_embedded_and_operator_agree_on_converted_files(
    sample_video: Path, minio_server: Any, s3_bucket: str, tmp_path: Path
) -> None:
    cluster = _cluster_outcome(sample_video, minio_server, s3_bucket, tmp_path / "jobs")
    embedded = _embedded_row(sample_video, tmp_path / "embedded")

    assert embedded.processing_state == cluster.processing_state.value == "ready"
    assert list(embedded.converted_files) == list(cluster.converted_files) == ["120p", "360p"]
    for name, local in embedded.converted_files.items():
        remote = cluster.converted_files[name]
        assert set(local) == set(remote)  # the same fields
        # The same storage keys (relative to the bucket / the storage root).
        assert local["file"] == remote["file"] == f"videos/{VIDEO_ID}/{name}/video.mp4"
        assert local["playlist"] == remote["playlist"] == f"videos/{VIDEO_ID}/{name}/index.m3u8"
        assert (local["width"], local["height"]) == (remote["width"], remote["height"])
        assert local["durationSeconds"] == pytest.approx(remote["durationSeconds"], abs=0.05)
        assert local["codecs"] == remote["codecs"] is not None  # for the master playlist's CODECS
        for field in ("bytes", "bitrate", "peakBitrate"):
            assert isinstance(local[field], int) and isinstance(remote[field], int)
            assert local[field] == pytest.approx(remote[field], rel=0.1)
        # The API serves both as the same public shape.
        assert RenditionInfo.model_validate(local) == RenditionInfo.model_validate(
            {**remote, "bytes": local["bytes"], "bitrate": local["bitrate"]}
        )
    assert embedded.thumbnail_key == cluster.thumbnail
    assert embedded.sprite_key == cluster.sprite
    assert embedded.storyboard_key == cluster.storyboard
    assert embedded.duration_seconds == pytest.approx(cluster.duration or 0, abs=0.05)
    # And the cluster side's keys exist in the bucket, like the local files on disk.
    remote_keys = set(minio_server.keys(s3_bucket, f"videos/{VIDEO_ID}/"))
    for info in cluster.converted_files.values():
        assert {info["file"], info["playlist"]} <= remote_keys
