"""LocalDispatcher against the real transcoder CLI, FFmpeg and a migrated SQLite database."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from sqlalchemy.orm import Session
from videoflix_core.db import Video
from videoflix_core.storage import source_key

from tests.embedded.local import Env
from tests.embedded.server import make_video


@pytest.fixture(scope="module")
def small_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_video(
        tmp_path_factory.mktemp("src") / "small.mp4", seconds=3, width=320, height=180
    )


def test_transcodes_to_ready_with_live_progress(env: Env, sample_video: Path) -> None:
    video = env.add_video(sample_video)
    dispatcher = env.dispatcher(max_parallel=2)
    dispatcher.start(resume=False)
    try:
        dispatcher.submit(video)
        progress_seen: list[int] = []
        deadline = time.monotonic() + 120
        while env.row(video.id).processing_state not in ("ready", "error"):
            assert time.monotonic() < deadline
            progress_seen.append(env.row(video.id).progress)
            time.sleep(0.05)
    finally:
        dispatcher.stop()
    row = env.row(video.id)
    assert row.processing_state == "ready", row.processing_error
    assert row.progress == 100
    assert any(0 < p < 100 for p in progress_seen), progress_seen
    assert progress_seen == sorted(progress_seen)  # the bar never jumps back
    assert list(row.converted_files) == ["120p", "360p"]  # a 360p source is never upscaled
    for name, info in row.converted_files.items():
        assert info["file"] == f"videos/{video.id}/{name}/video.mp4"
        assert info["playlist"] == f"videos/{video.id}/{name}/index.m3u8"
        assert info["height"] == int(name[:-1])
        assert env.storage.size(info["file"]) == info["bytes"] > 0
        assert (env.storage.read(info["playlist"], max_bytes=100_000) or b"").startswith(b"#EXTM3U")
    assert row.thumbnail_key == f"videos/{video.id}/thumbnails/poster.jpg"
    assert (env.storage.size(row.thumbnail_key) or 0) > 0
    assert row.duration_seconds == pytest.approx(4.0, abs=0.2)
    assert 1 <= dispatcher.peak_active_steps <= 2


def test_parallelism_is_bounded(env: Env, small_video: Path) -> None:
    videos = [env.add_video(small_video, f"clip{i}.mp4") for i in range(2)]
    dispatcher = env.dispatcher(max_parallel=1)
    dispatcher.start(resume=False)
    try:
        for video in videos:
            dispatcher.submit(video)
        for video in videos:
            assert env.wait(video.id).processing_state == "ready"
    finally:
        dispatcher.stop()
    # Two videos x (probe, 120p, thumbnail) were all ready to run, yet never two at once.
    assert dispatcher.peak_active_steps == 1


def test_bad_input_fails_at_once_with_a_reason(env: Env, tmp_path: Path) -> None:
    bogus = tmp_path / "notes.mp4"
    bogus.write_text("this is not a video\n" * 100)
    video = env.add_video(bogus)
    dispatcher = env.dispatcher(max_parallel=1, retry_delay_seconds=5.0)
    dispatcher.start(resume=False)
    started = time.monotonic()
    try:
        dispatcher.submit(video)
        row = env.wait(video.id, timeout=60)
    finally:
        dispatcher.stop()
    assert row.processing_state == "error"
    assert row.processing_error and row.processing_error.startswith("probe:")
    assert row.converted_files == {}
    # Exit code 2 is never retried (a retry would have waited 5 s first).
    assert time.monotonic() - started < 5
    state = json.loads((env.state_dir / f"{video.id}.json").read_text())
    assert state["status"]["probe"]["attempts"] == 1


def test_restart_resumes_without_redoing_finished_steps(env: Env, sample_video: Path) -> None:
    video = env.add_video(sample_video)
    first = env.dispatcher(max_parallel=1)
    first.start(resume=False)
    try:
        first.submit(video)
        # Stop in the middle: the probe is done (progress > 0), renditions are still to come.
        env.wait(video.id, states=("processing",), min_progress=5)
    finally:
        first.stop()
    assert env.row(video.id).processing_state == "processing"
    saved = json.loads((env.state_dir / f"{video.id}.json").read_text())
    probe_finished = saved["status"]["probe"]["finishedAt"]
    assert probe_finished

    second = env.dispatcher(max_parallel=2)
    second.start(resume=True)
    try:
        row = env.wait(video.id)
    finally:
        second.stop()
    assert row.processing_state == "ready", row.processing_error
    assert list(row.converted_files) == ["120p", "360p"]
    final = json.loads((env.state_dir / f"{video.id}.json").read_text())
    assert final["status"]["probe"]["finishedAt"] == probe_finished  # not probed again


def test_cancel_stops_and_removes_the_prefix(env: Env, sample_video: Path) -> None:
    video = env.add_video(sample_video)
    dispatcher = env.dispatcher(max_parallel=1)
    dispatcher.start(resume=False)
    try:
        dispatcher.submit(video)
        env.wait(video.id, states=("processing",))
        dispatcher.cancel(video.id)
        assert dispatcher.wait_idle(30)
    finally:
        dispatcher.stop()
    assert not env.storage.path(f"videos/{video.id}/").exists()
    assert not (env.state_dir / f"{video.id}.json").exists()


def test_new_generation_replaces_old_outputs(
    env: Env, sample_video: Path, small_video: Path
) -> None:
    video = env.add_video(sample_video)
    dispatcher = env.dispatcher(max_parallel=2)
    dispatcher.start(resume=False)
    try:
        dispatcher.submit(video)
        assert env.wait(video.id).processing_state == "ready"
        assert env.storage.path(f"videos/{video.id}/360p/video.mp4").is_file()
        # The API's replace: a new source and a new generation.
        new_key = source_key(video.id, "smaller.mp4")
        env.storage.path(new_key).write_bytes(small_video.read_bytes())
        with Session(env.engine, expire_on_commit=False) as db:
            row = db.get(Video, video.id)
            assert row is not None
            row.source_key = new_key
            row.transcode_generation = 2
            row.processing_state = "pending"
            db.commit()
            dispatcher.submit(row)
        row = env.wait(video.id)
    finally:
        dispatcher.stop()
    assert row.processing_state == "ready"
    assert row.transcode_generation == 2
    assert list(row.converted_files) == ["120p"]  # a 180p source gets only 120p
    assert not env.storage.path(f"videos/{video.id}/360p").exists()
