"""Embedded mode chunks too (issue 14): the LocalDispatcher runs a long source's rung as the
operator does, with the same decision (`videoflix_core.chunks.chunk_plan`), steps and transcoder
subcommands (`chunk` per index, `audio`, `assemble`), its indexes as parallel local processes
under the core limit, and the result is the unchunked encode's twin."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from videoflix_api.embedded.dispatcher import LocalDispatcher, ProcessRun
from videoflix_api.embedded.sample import sample_video_argv
from videoflix_core.chunks import parse_indexes
from videoflix_core.transcode import VideoTranscodeStatus

from tests.embedded.local import Env
from tests.fixtures.media import frame_shape
from tests.fixtures.procs import wait_until

SLOTS = 2
FLAKY = Path(__file__).with_name("flaky_transcoder.py")


@pytest.fixture(scope="module")
def long_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 s, 320x180 at a constant 10 fps with a tone: six 10 s chunks of one rung (120p)."""
    path = tmp_path_factory.mktemp("chunked") / "long.mp4"
    subprocess.run(sample_video_argv(path, 60, 320, 180, fps=10), check=True, timeout=120)
    return path


def most_at_once(runs: list[ProcessRun]) -> int:
    """The most subprocesses alive at one instant (an end before a start at the same time)."""
    edges = sorted([(r.started, 1) for r in runs] + [(r.ended, -1) for r in runs])
    alive = peak = 0
    for _, delta in edges:
        alive += delta
        peak = max(peak, alive)
    return peak


def _run(env: Env, source: Path, name: str, **kwargs: object) -> tuple[int, LocalDispatcher]:
    video = env.add_video(source, name)
    dispatcher = env.dispatcher(max_parallel=SLOTS, **kwargs)
    dispatcher.start(resume=False)
    try:
        dispatcher.submit(video)
        row = env.wait(video.id, timeout=120)
        assert dispatcher.wait_idle(30)
    finally:
        dispatcher.stop()
    assert row.processing_state == "ready", row.processing_error
    assert list(row.converted_files) == ["120p"]
    return video.id, dispatcher


def _status(env: Env, video_id: int) -> VideoTranscodeStatus:
    """The dispatcher's saved status (the CR status of embedded mode)."""
    state = json.loads((env.state_dir / f"{video_id}.json").read_text())
    return VideoTranscodeStatus.model_validate(state["status"])


def test_a_60s_source_in_10s_chunks_is_frame_exact_under_the_core_limit(
    env: Env, long_source: Path
) -> None:
    plain_id, plain = _run(env, long_source, "plain.mp4")
    assert {r.step for r in plain.process_runs} == {"probe", "thumbnail", "rendition/120p"}

    vid, chunked = _run(env, long_source, "long.mp4", chunk_seconds=10)
    runs = list(chunked.process_runs)
    # The operator's steps: six indexes (each once, JOB_COMPLETION_INDEX 0-5), the audio once,
    # one assembly, and no unchunked rendition.
    assert sorted((r.step, r.index) for r in runs if r.step == "chunks/120p") == [
        ("chunks/120p", i) for i in range(6)
    ]
    assert sorted(r.step for r in runs if r.step != "chunks/120p") == [
        "assemble/120p", "audio", "probe", "thumbnail"
    ]  # fmt: skip
    # Never more transcoders than slots, and the indexes did run side by side.
    assert most_at_once(runs) == SLOTS
    assert most_at_once([r for r in runs if r.step == "chunks/120p"]) == SLOTS
    assert chunked.peak_active_steps == SLOTS

    status = _status(env, vid)
    rung = (status.renditions or {})["120p"]
    assert rung.chunks is not None
    assert (rung.chunks.total, rung.chunks.seconds, rung.chunks.done) == (6, 10, 6)
    assert status.chunks == "6/6" and status.audio is not None
    assert status.audio.phase == "Succeeded"

    row = env.row(vid)
    assert row.converted_files["120p"]["file"] == f"videos/{vid}/120p/video.mp4"
    assert row.converted_files["120p"]["playlist"] == f"videos/{vid}/120p/index.m3u8"
    media = env.storage.path(f"videos/{vid}/")
    assert not [p for p in media.rglob("*") if "chunks" in p.relative_to(media).parts]

    plain_file = env.storage.path(env.row(plain_id).converted_files["120p"]["file"])
    chunked_file = env.storage.path(row.converted_files["120p"]["file"])
    shape = frame_shape(chunked_file)
    assert len(shape["video_pts"]) == 600
    assert shape == frame_shape(plain_file)


def test_a_failed_index_is_retried_alone(env: Env, long_source: Path, tmp_path: Path) -> None:
    # The flaky entrypoint kills the first attempt of index 3 (exit 137), then runs for real.
    flaky_dir = tmp_path / "flaky"
    flaky_dir.mkdir()
    vid, dispatcher = _run(
        env,
        long_source,
        "long.mp4",
        chunk_seconds=10,
        entrypoint=[sys.executable, str(FLAKY)],
        step_env={"VIDEOFLIX_FLAKY_DIR": str(flaky_dir)},
        retry_delay_seconds=0.1,
    )
    assert (flaky_dir / "index-3").exists()  # the failure did happen
    indexes = sorted(r.index for r in dispatcher.process_runs if r.step == "chunks/120p")
    assert indexes == [0, 1, 2, 3, 3, 4, 5]  # index 3 twice, none of the others redone
    # The step as the operator sees an Indexed Job: 6 indexes succeeded, 1 attempt failed.
    step = json.loads((env.state_dir / f"{vid}.json").read_text())["steps"]["chunks/120p"]
    assert (step["succeeded"], step["failed"], step["finished"]) == (6, 1, "Complete")
    assert (step["completed_indexes"], step["failed_indexes"]) == ("0-5", None)
    rung = (_status(env, vid).renditions or {})["120p"]
    assert rung.phase == "Succeeded" and rung.chunks is not None
    assert rung.chunks.completed_indexes == "0-5"
    assert len(frame_shape(env.storage.path(f"videos/{vid}/120p/video.mp4"))["video_pts"]) == 600


def test_a_restart_runs_only_the_indexes_not_done(env: Env, long_source: Path) -> None:
    video = env.add_video(long_source, "long.mp4")
    state = env.state_dir / f"{video.id}.json"

    def done_before() -> str | None:
        return json.loads(state.read_text()).get("indexes", {}).get("chunks/120p")

    first = env.dispatcher(max_parallel=1, chunk_seconds=10)
    first.start(resume=False)
    try:
        first.submit(video)
        # One slot: the indexes run one after another; stop once two of them are done.
        wait_until(lambda: len(parse_indexes(done_before())) >= 2, "two chunks done", 60)
    finally:
        first.stop()
    before = parse_indexes(done_before())
    assert env.row(video.id).processing_state == "processing"

    second = env.dispatcher(max_parallel=SLOTS, chunk_seconds=10)
    second.start(resume=True)
    try:
        row = env.wait(video.id, timeout=120)
    finally:
        second.stop()
    assert row.processing_state == "ready", row.processing_error
    again = {r.index for r in second.process_runs if r.step == "chunks/120p"}
    assert again and not again & before  # no done index is encoded twice
    assert again | before == set(range(6))
    assembled = env.storage.path(f"videos/{video.id}/120p/video.mp4")
    assert len(frame_shape(assembled)["video_pts"]) == 600
