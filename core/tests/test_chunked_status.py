"""Chunked renditions in the pure aggregation (issue 14): the chunked-or-not decision, the step
order chunks + audio → assemble, per-rung chunk counts, failures, and an assembled rung that
reads exactly like a finished unchunked one."""

from __future__ import annotations

from typing import Any

from videoflix_core.chunks import chunk_plan, format_indexes, parse_indexes
from videoflix_core.results import step_recorded
from videoflix_core.status import (
    AUDIO,
    CHUNKS,
    PROBE,
    StepObservation,
    aggregate,
    assemble_step,
    chunk_step,
    converted_files,
    rendition_step,
)
from videoflix_core.transcode import (
    Phase,
    ProbeResult,
    StepPhase,
    VideoTranscodeSpec,
    VideoTranscodeStatus,
)

T0 = "2026-01-01T00:00:00Z"
LADDER = ["120p", "360p"]


def spec(**extra: Any) -> VideoTranscodeSpec:
    data: dict[str, Any] = {
        "videoId": 42,
        "source": {"bucket": "media", "key": "videos/42/source/a.mp4"},
        "renditions": [{"name": n} for n in LADDER],
        "thumbnail": False,
    }
    data.update(extra)
    return VideoTranscodeSpec.model_validate(data)


def probe(
    duration: float = 60.0, fps: float = 25.0, max_fps: float | None = 25.0, **kw: Any
) -> Any:
    result = {
        "durationSeconds": duration,
        "width": 640,
        "height": 360,
        "fps": fps,
        "maxFps": max_fps,
        "videoCodec": "h264",
        "audioCodec": "aac",
        **kw,
    }
    return StepObservation(name="p", succeeded=1, finished="Complete", result=result)


def done(name: str, result: dict[str, Any] | None = None, **kw: Any) -> StepObservation:
    return StepObservation(name=name, succeeded=1, finished="Complete", result=result, **kw)


def assembled(rung: str, height: int) -> StepObservation:
    out = {
        "name": rung,
        "width": height * 16 // 9 // 2 * 2,
        "height": height,
        "bytes": 9,
        "file": f"videos/42/{rung}/video.mp4",
        "playlist": f"videos/42/{rung}/index.m3u8",
    }
    return done(f"j-join-{rung}", {"renditions": [out]})


def run(
    steps: dict[str, StepObservation],
    previous: VideoTranscodeStatus | None = None,
    chunk_seconds: float = 10,
    **spec_extra: Any,
) -> Any:
    return aggregate(spec(**spec_extra), steps, previous, now=T0, chunk_seconds=chunk_seconds)


def test_the_decision_needs_the_setting_a_constant_rate_and_more_than_one_chunk() -> None:
    def source(**kw: Any) -> ProbeResult:
        base: dict[str, Any] = {
            "durationSeconds": 60,
            "width": 1,
            "height": 1,
            "fps": 30.0,
            "maxFps": 30.0,
        }
        return ProbeResult.model_validate({**base, **kw})

    plan = chunk_plan(source(), 10)
    assert plan is not None and [c.start for c in plan] == [0, 10, 20, 30, 40, 50]
    assert chunk_plan(source(), 0) is None  # off
    assert chunk_plan(source(durationSeconds=10), 10) is None  # one chunk: unchunked
    assert chunk_plan(source(maxFps=60.0), 10) is None  # variable rate: not frame-exact
    assert chunk_plan(source(maxFps=None), 10) is None  # an older probe without the rate


def test_indexes_parse_and_format_like_the_job_controller() -> None:
    assert parse_indexes("0-3,5,7-8") == {0, 1, 2, 3, 5, 7, 8}
    assert parse_indexes(None) == parse_indexes("") == frozenset()
    assert parse_indexes("1,x,3-") == {1}  # malformed parts say nothing
    assert format_indexes({0, 1, 2, 3, 5, 7, 8}) == "0-3,5,7-8"
    assert format_indexes(set()) == ""


def test_a_long_source_starts_one_indexed_step_per_rung_and_the_audio_once() -> None:
    agg = run({PROBE: probe()})
    assert set(agg.to_start) == {chunk_step("120p"), chunk_step("360p"), AUDIO}
    assert [c.start for c in agg.chunks] == [0, 10, 20, 30, 40, 50] and agg.with_audio
    assert not any(k.startswith("rendition/") for k in agg.to_start)
    r = agg.status.renditions["120p"]
    assert r.phase == StepPhase.PENDING and r.chunks is not None
    assert (r.chunks.total, r.chunks.done, r.chunks.seconds) == (6, 0, 10)
    assert agg.status.chunks == "0/12"
    # Off, or a short source: the unchunked path as before.
    assert set(run({PROBE: probe()}, chunk_seconds=0).to_start) == {
        rendition_step("120p"),
        rendition_step("360p"),
    }
    assert run({PROBE: probe(duration=8)}).chunks == []


def test_counts_come_from_completed_indexes_and_assembly_waits_for_chunks_and_audio() -> None:
    running = StepObservation(name="j-chunks-120p", active=2, completed_indexes="0-2,4")
    agg = run({PROBE: probe(), chunk_step("120p"): running})
    r = agg.status.renditions["120p"]
    assert r.phase == StepPhase.RUNNING and r.chunks.done == 4
    assert r.chunks.completed_indexes == "0-2,4" and r.attempts == 1
    assert agg.status.phase == Phase.TRANSCODING
    assert agg.status.message == "0/2 renditions ready, 4/12 chunks encoded"
    chunks_done = done("j-chunks-120p", completed_indexes="0-5")
    agg = run({PROBE: probe(), chunk_step("120p"): chunks_done})
    assert assemble_step("120p") not in agg.to_start  # the audio is not there yet
    audio_done = done("j-audio", {"audio": [{"bitrate": 64, "file": "k"}]})
    agg = run({PROBE: probe(), chunk_step("120p"): chunks_done, AUDIO: audio_done})
    assert assemble_step("120p") in agg.to_start
    assert agg.status.renditions["120p"].phase == StepPhase.RUNNING
    assert agg.status.audio is not None and agg.status.audio.phase == StepPhase.SUCCEEDED


def test_an_assembled_rung_is_a_finished_rendition_and_playable() -> None:
    steps = {
        PROBE: probe(),
        chunk_step("120p"): done("j-chunks-120p", completed_indexes="0-5", started_at=T0),
        AUDIO: done("j-audio", {"audio": [{"bitrate": 64, "file": "k"}]}),
        assemble_step("120p"): assembled("120p", 120),
    }
    agg = run(steps)
    r = agg.status.renditions["120p"]
    assert r.phase == StepPhase.SUCCEEDED and r.output is not None
    assert r.chunks is not None and r.chunks.done == 6
    assert r.started_at == T0  # the rung's start is its chunks', not its assembly's
    assert converted_files(agg.status)["120p"]["file"] == "videos/42/120p/video.mp4"
    playable = next(c for c in agg.status.conditions or [] if c.type == "Playable")
    assert playable.status == "True"
    # Once recorded, a rung whose Jobs are gone (TTL) stays finished and starts nothing again.
    later = run({PROBE: probe()}, previous=agg.status)
    assert later.status.renditions["120p"].phase == StepPhase.SUCCEEDED
    assert chunk_step("120p") not in later.to_start and assemble_step("120p") not in later.to_start
    assert step_recorded(agg.status, agg.status.spec_hash or "", chunk_step("120p"))
    assert step_recorded(agg.status, agg.status.spec_hash or "", AUDIO)


def test_an_index_out_of_retries_fails_the_rung_with_the_index_and_reason() -> None:
    failed = StepObservation(
        name="j-chunks-120p",
        failed=3,
        finished="Failed",
        reason="MaxFailedIndexesExceeded",
        message="Job has exceeded the specified maximal number of failed indexes",
        completed_indexes="0-2",
        failed_indexes="3",
    )
    agg = run({PROBE: probe(), chunk_step("120p"): failed})
    r = agg.status.renditions["120p"]
    assert r.phase == StepPhase.FAILED and r.message is not None
    assert r.message.startswith("chunk 3 failed: ") and "failed indexes" in r.message
    assert agg.status.phase == Phase.FAILED and agg.to_start == {}
    # The failed pod's own reason wins over the Job controller's summary.
    with_reason = StepObservation(
        name="j-chunks-120p", failed=1, finished="Failed", reason="MaxFailedIndexesExceeded",
        failed_indexes="3", result={"error": "chunk 3 starts at 30 s, after the source ends"},
    )
    agg = run({PROBE: probe(), chunk_step("120p"): with_reason})
    assert agg.status.renditions["120p"].message == (
        "chunk 3 failed: chunk 3 starts at 30 s, after the source ends"
    )


def test_a_failed_audio_fails_every_chunked_rung() -> None:
    audio = StepObservation(
        name="j-audio", failed=3, finished="Failed", reason="BackoffLimitExceeded"
    )
    agg = run({PROBE: probe(), AUDIO: audio})
    assert {r.phase for r in agg.status.renditions.values()} == {StepPhase.FAILED}
    assert agg.status.renditions["360p"].message.startswith("audio: ")


def test_a_silent_source_gets_no_audio_step_and_assembles_video_only() -> None:
    agg = run({PROBE: probe(audioCodec=None)})
    assert AUDIO not in agg.to_start and not agg.with_audio and agg.status.audio is None
    agg = run(
        {
            PROBE: probe(audioCodec=None),
            chunk_step("120p"): done("j-chunks-120p", completed_indexes="0-5"),
        }
    )
    assert assemble_step("120p") in agg.to_start


def test_single_pass_chunks_every_rung_in_one_indexed_step() -> None:
    agg = run({PROBE: probe()}, strategy="SinglePass")
    assert set(agg.to_start) == {CHUNKS, AUDIO}
    assert [r.name for r in agg.to_start[CHUNKS]] == LADDER
    steps = {
        PROBE: probe(),
        CHUNKS: done("j-chunks", completed_indexes="0-5"),
        AUDIO: done("j-audio", {"audio": [{"bitrate": 64}]}),
    }
    agg = run(steps, strategy="SinglePass")
    assert set(agg.to_start) == {assemble_step("120p"), assemble_step("360p")}


def test_the_path_is_sticky_once_work_started() -> None:
    first = run({PROBE: probe()})
    # The setting turned off mid-way: the recorded chunk length keeps the chunked plan.
    again = run({PROBE: probe()}, previous=first.status, chunk_seconds=0)
    assert [c.start for c in again.chunks] == [0, 10, 20, 30, 40, 50]
    # An unchunked rendition already running keeps the unchunked path when the setting is on.
    unchunked = run(
        {PROBE: probe(), rendition_step("120p"): StepObservation(name="r", active=1)},
        chunk_seconds=10,
    )
    assert unchunked.chunks == [] and rendition_step("360p") in unchunked.to_start
