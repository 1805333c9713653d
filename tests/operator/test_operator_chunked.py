"""Chunked renditions on the real control plane (issue 14): the operator runs a long source's rung
as an Indexed Job of chunks (the real Job controller hands out the indexes, the local kubelet runs
the real transcoder), the audio once, then assembles; the result is the unchunked encode's twin.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from videoflix_core.transcode import Strategy

from tests.fixtures.media import frame_shape
from tests.fixtures.procs import wait_until
from tests.operator.conftest import Platform

pytestmark = pytest.mark.cluster
INDEX = "batch.kubernetes.io/job-completion-index"


@pytest.fixture(scope="module")
def long_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 s, 320x180 at 10 fps with a tone: six 10 s chunks, cheap to encode."""
    out = tmp_path_factory.mktemp("chunked") / "long.mp4"
    subprocess.run(
        [
            "ffmpeg", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=10:duration=60",
            "-f", "lavfi", "-i", "sine=frequency=440:duration=60",
            "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
            "-c:a", "aac", "-shortest", str(out),
        ],
        check=True,
    )  # fmt: skip
    return out


def test_a_60s_source_in_10s_chunks_is_frame_exact_and_a_failed_index_retries_alone(
    make_platform: Any, flaky_image: str, long_source: Path, tmp_path: Path
) -> None:
    # The flaky image kills the first attempt of index 3 of every chunks Job (exit 137).
    p: Platform = make_platform(
        transcoder_image=flaky_image, chunk_seconds="10", chunk_parallelism="2"
    )
    vid, name = p.transcode(long_source, renditions=["120p"], thumbnail=False)
    cr = p.wait_phase(name, "Succeeded", timeout=120)

    st = cr["status"]
    rung = st["renditions"]["120p"]
    assert rung["chunks"] == {
        "total": 6, "seconds": 10, "done": 6, "completedIndexes": "0-5"
    }  # fmt: skip
    assert st["chunks"] == "6/6" and st["ready"] == "1/1" and st["audio"]["phase"] == "Succeeded"
    assert rung["output"]["file"] == f"videos/{vid}/120p/video.mp4"
    assert rung["output"]["playlist"] == f"videos/{vid}/120p/index.m3u8"

    jobs = {j["metadata"]["labels"]["videoflix.io/step"]: j for j in p.jobs(name)}
    assert set(jobs) == {"probe", "chunk", "audio", "assemble"}  # no unchunked rendition Job
    chunk_job = jobs["chunk"]
    assert chunk_job["spec"]["completionMode"] == "Indexed"
    assert (chunk_job["spec"]["completions"], chunk_job["spec"]["parallelism"]) == (6, 2)
    assert chunk_job["status"]["completedIndexes"] == "0-5"
    # Index 3 failed once and was retried alone: one extra pod, none of the others redone.
    assert (chunk_job["status"]["succeeded"], chunk_job["status"]["failed"]) == (6, 1)
    phases: dict[int, list[str]] = {}
    for pod in p.pods(name):
        if pod["metadata"]["labels"].get("videoflix.io/step") == "chunk":
            index = int(pod["metadata"]["annotations"][INDEX])
            phases.setdefault(index, []).append(pod["status"]["phase"])
    assert {i: sorted(ph) for i, ph in phases.items()} == {
        i: ["Failed", "Succeeded"] if i == 3 else ["Succeeded"] for i in range(6)
    }

    # kopf posts Events in the background: the retry of the index is told once.
    wait_until(
        lambda: "StepRetried" in {e["reason"] for e in p.events(name)}, "the StepRetried Event"
    )
    retried = [e["message"] for e in p.events(name) if e["reason"] == "StepRetried"]
    assert retried == ["Step 120p failed transiently; attempt 2 started"]

    row = p.video(vid)
    assert row.processing_state == "ready"
    assert row.converted_files["120p"]["file"] == rung["output"]["file"]
    keys = set(p.keys(vid))
    assert {f"videos/{vid}/120p/video.mp4", f"videos/{vid}/120p/index.m3u8"} <= keys
    assert not [k for k in keys if k.startswith(f"videos/{vid}/chunks/")]  # intermediates gone

    # Frame-exact against the unchunked encode of the same source and rung (local transcoder).
    assembled = tmp_path / "assembled.mp4"
    p.minio.client().download_file(p.bucket, rung["output"]["file"], str(assembled))
    width, height = rung["output"]["width"], rung["output"]["height"]
    run = subprocess.run(
        [
            sys.executable, "-m", "videoflix_transcoder", "rendition",
            "--source", str(long_source), "--dest", str(tmp_path / "un"), "--name", "120p",
            "--width", str(width), "--height", str(height),
        ],
        capture_output=True, text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("VIDEOFLIX_")},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    unchunked = frame_shape(tmp_path / "un" / "120p" / "video.mp4")
    chunked = frame_shape(assembled)
    assert len(chunked["video_pts"]) == 600
    assert chunked == unchunked


def test_single_pass_chunks_every_rung_from_one_decode_per_index(
    make_platform: Any, long_source: Path, tmp_path: Path
) -> None:
    p: Platform = make_platform(chunk_seconds="10", chunk_parallelism="2")
    vid, name = p.transcode(
        long_source, renditions=["120p", "180p"], thumbnail=False, strategy=Strategy.SINGLE_PASS
    )
    cr = p.wait_phase(name, "Succeeded", timeout=120)

    st = cr["status"]
    assert st["ready"] == "2/2" and st["audio"]["phase"] == "Succeeded"
    jobs = p.jobs(name)
    by_step: dict[str, list[dict[str, Any]]] = {}
    for job in jobs:
        by_step.setdefault(job["metadata"]["labels"]["videoflix.io/step"], []).append(job)
    # One Indexed Job encodes both rungs of each chunk; each rung is assembled on its own.
    assert {step: len(js) for step, js in by_step.items()} == {
        "probe": 1, "chunk": 1, "audio": 1, "assemble": 2
    }  # fmt: skip
    (chunk_job,) = by_step["chunk"]
    assert chunk_job["spec"]["completionMode"] == "Indexed"
    assert chunk_job["spec"]["completions"] == 6
    assert chunk_job["status"]["completedIndexes"] == "0-5"
    shapes = {}
    for rung in ("120p", "180p"):
        output = st["renditions"][rung]["output"]
        assert output["file"] == f"videos/{vid}/{rung}/video.mp4"
        local = tmp_path / f"{rung}.mp4"
        p.minio.client().download_file(p.bucket, output["file"], str(local))
        shapes[rung] = frame_shape(local)
    # Every frame of the source in each rung, on the same timeline.
    assert len(shapes["120p"]["video_pts"]) == 600
    assert shapes["120p"]["video_pts"] == shapes["180p"]["video_pts"]
    assert shapes["120p"]["duration"] == shapes["180p"]["duration"]
    assert p.video(vid).processing_state == "ready"
    assert not [k for k in p.keys(vid) if k.startswith(f"videos/{vid}/chunks/")]
