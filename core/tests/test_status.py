"""Pure aggregation of step observations into the VideoTranscode status and the videos outcome."""

from __future__ import annotations

from typing import Any

import pytest
from videoflix_core.states import ProcessingState
from videoflix_core.status import (
    LADDER,
    PROBE,
    THUMBNAIL,
    StepObservation,
    aggregate,
    converted_files,
    outcome,
    parse_result,
    rendition_step,
    spec_hash,
)
from videoflix_core.transcode import Phase, StepPhase, VideoTranscodeSpec, VideoTranscodeStatus

T0 = "2026-01-01T00:00:00Z"
T1 = "2026-01-01T00:01:00Z"


def spec(**extra: Any) -> VideoTranscodeSpec:
    data = {"videoId": 42, "source": {"bucket": "media", "key": "videos/42/source/a.mp4"}}
    data.update(extra)
    return VideoTranscodeSpec.model_validate(data)


def probe_done(width: int = 1920, height: int = 1080) -> StepObservation:
    result = {
        "durationSeconds": 3.0,
        "width": width,
        "height": height,
        "rotation": 0,
        "fps": 25.0,
        "videoCodec": "h264",
        "audioCodec": "aac",
        "bitrate": 900000,
    }
    return StepObservation(
        name="p", succeeded=1, finished="Complete", result=result, started_at=T0, finished_at=T0
    )


def rendition_done(name: str, height: int) -> StepObservation:
    return StepObservation(
        name=f"job-{name}",
        succeeded=1,
        finished="Complete",
        result={"renditions": [rendition_result(name, height)]},
        finished_at=T1,
    )


def rendition_result(name: str, height: int) -> dict[str, Any]:
    return {
        "name": name,
        "width": height * 16 // 9,
        "height": height,
        "bitrate": 1000,
        "peakBitrate": 1400,
        "codecs": "avc1.64001f,mp4a.40.2",
        "bytes": 5000,
        "durationSeconds": 3.0,
        "encodeSeconds": 1.5,
        "file": f"videos/42/{name}/video.mp4",
        "playlist": f"videos/42/{name}/index.m3u8",
    }


THUMB_DONE = StepObservation(
    name="job-thumb",
    succeeded=1,
    finished="Complete",
    result={
        "poster": "videos/42/thumbnails/poster.jpg",
        "sprite": "videos/42/thumbnails/sprite.jpg",
        "vtt": "videos/42/thumbnails/storyboard.vtt",
    },
)
RUNNING = StepObservation(name="r", active=1, started_at=T0)
QUEUED = StepObservation(name="q", suspended=True)
ALL = [("120p", 120), ("360p", 360), ("720p", 720), ("1080p", 1080)]


def all_done(sizes: list[tuple[str, int]] = ALL) -> dict[str, StepObservation]:
    steps = {PROBE: probe_done(), THUMBNAIL: THUMB_DONE}
    steps.update({rendition_step(n): rendition_done(n, h) for n, h in sizes})
    return steps


def cond(status: VideoTranscodeStatus, type_: str) -> tuple[str, str]:
    [c] = [c for c in status.conditions or [] if c.type == type_]
    return c.status, c.reason


def test_nothing_observed_is_pending_and_asks_for_the_probe() -> None:
    agg = aggregate(spec(), {}, None, now=T0, generation=1)
    st = agg.status
    assert st.phase == Phase.PENDING
    assert st.progress == 0
    assert st.ready is None
    assert st.observed_generation == 1
    assert list(agg.to_start) == [PROBE]
    assert cond(st, "Ready") == ("False", "Pending")
    assert cond(st, "Playable") == ("False", "NoRenditionReady")
    assert cond(st, "Failed") == ("False", "NoFailure")


def test_queued_probe_is_pending_with_a_message_and_not_restarted() -> None:
    agg = aggregate(spec(), {PROBE: QUEUED}, None, now=T0)
    assert agg.status.phase == Phase.PENDING
    assert agg.status.probe and agg.status.probe.phase == StepPhase.QUEUED
    assert agg.status.message == "Waiting for a free slot"
    assert agg.to_start == {}


def test_running_probe_is_probing() -> None:
    agg = aggregate(spec(), {PROBE: RUNNING}, None, now=T0)
    assert agg.status.phase == Phase.PROBING
    assert agg.status.probe and agg.status.probe.attempts == 1
    assert agg.to_start == {}


def test_probe_done_plans_the_full_ladder_and_thumbnail() -> None:
    agg = aggregate(spec(), {PROBE: probe_done()}, None, now=T0)
    st = agg.status
    assert st.phase == Phase.TRANSCODING
    assert st.source and st.source.height == 1080
    assert [r.name for r in agg.rungs] == ["120p", "360p", "720p", "1080p"]
    assert set(agg.to_start) == {THUMBNAIL, *(rendition_step(n) for n, _ in ALL)}
    assert st.ready == "0/4"
    assert st.progress == 5
    assert st.renditions and all(r.phase == StepPhase.PENDING for r in st.renditions.values())


def test_a_480p_probe_plans_no_720p_or_1080p() -> None:
    agg = aggregate(spec(), {PROBE: probe_done(854, 480)}, None, now=T0)
    assert [r.name for r in agg.rungs] == ["120p", "360p"]
    assert set(agg.status.renditions or {}) == {"120p", "360p"}
    assert rendition_step("720p") not in agg.to_start


def test_custom_ladder_is_planned_without_upscaling() -> None:
    s = spec(renditions=[{"name": "240p"}, {"name": "720p"}], thumbnail=False)
    agg = aggregate(s, {PROBE: probe_done(640, 360)}, None, now=T0)
    assert [r.name for r in agg.rungs] == ["240p"]
    assert agg.status.thumbnail is None
    assert set(agg.to_start) == {rendition_step("240p")}


def test_first_rendition_makes_it_playable_but_not_ready() -> None:
    steps = {
        PROBE: probe_done(),
        rendition_step("120p"): rendition_done("120p", 120),
        rendition_step("360p"): RUNNING,
        rendition_step("720p"): QUEUED,
        rendition_step("1080p"): QUEUED,
        THUMBNAIL: RUNNING,
    }
    agg = aggregate(spec(), steps, None, now=T0)
    st = agg.status
    assert st.phase == Phase.TRANSCODING
    assert st.ready == "1/4"
    assert cond(st, "Playable") == ("True", "RenditionReady")
    assert cond(st, "Ready") == ("False", "Transcoding")
    assert st.renditions and st.renditions["720p"].phase == StepPhase.QUEUED
    assert 5 < st.progress < 100
    assert agg.to_start == {}
    assert outcome(spec(), st).processing_state == ProcessingState.PROCESSING
    assert list(converted_files(st)) == ["120p"]


def test_everything_done_is_succeeded_ready_and_100() -> None:
    agg = aggregate(spec(), all_done(), None, now=T0, generation=2)
    st = agg.status
    assert st.phase == Phase.SUCCEEDED
    assert st.progress == 100
    assert st.ready == "4/4"
    assert cond(st, "Ready") == ("True", "TranscodeSucceeded")
    assert cond(st, "Playable") == ("True", "RenditionReady")
    assert agg.to_start == {}
    out = outcome(spec(), st)
    assert out.processing_state == ProcessingState.READY
    assert out.thumbnail == "videos/42/thumbnails/poster.jpg"
    assert out.storyboard == "videos/42/thumbnails/storyboard.vtt"
    assert out.duration == 3.0
    assert out.processing_error is None
    assert list(out.converted_files) == ["120p", "360p", "720p", "1080p"]
    assert out.converted_files["720p"] == {
        "width": 1280,
        "height": 720,
        "bitrate": 1000,
        "peakBitrate": 1400,
        "codecs": "avc1.64001f,mp4a.40.2",
        "bytes": 5000,
        "durationSeconds": 3.0,
        "file": "videos/42/720p/video.mp4",
        "playlist": "videos/42/720p/index.m3u8",
    }


def test_converted_files_without_peak_or_codecs_keeps_them_as_none() -> None:
    # Results of a transcoder that did not report them yet still make a playable rendition.
    steps = all_done([("120p", 120)])
    old = dict(rendition_result("120p", 120))
    del old["peakBitrate"], old["codecs"]
    steps[rendition_step("120p")] = StepObservation(
        name="j", succeeded=1, finished="Complete", result={"renditions": [old]}
    )
    files = converted_files(aggregate(spec(), steps, None, now=T0).status)
    assert files["120p"]["peakBitrate"] is None and files["120p"]["codecs"] is None
    assert files["120p"]["bitrate"] == 1000


def test_waits_for_the_thumbnail_before_succeeding() -> None:
    steps = all_done()
    steps[THUMBNAIL] = RUNNING
    st = aggregate(spec(), steps, None, now=T0).status
    assert st.phase == Phase.TRANSCODING
    assert st.ready == "4/4"
    assert st.progress < 100


def test_failed_thumbnail_still_succeeds_with_a_message() -> None:
    steps = all_done()
    steps[THUMBNAIL] = StepObservation(
        name="t", failed=3, finished="Failed", reason="BackoffLimitExceeded"
    )
    st = aggregate(spec(), steps, None, now=T0).status
    assert st.phase == Phase.SUCCEEDED
    assert st.message and st.message.startswith("thumbnail: failed 3 times")
    assert outcome(spec(), st).thumbnail is None


def test_bad_input_probe_fails_with_the_probe_reason() -> None:
    obs = StepObservation(
        name="p",
        failed=1,
        finished="Failed",
        reason="PodFailurePolicy",
        result={"error": "not a video: invalid data found"},
    )
    agg = aggregate(spec(), {PROBE: obs}, None, now=T0)
    st = agg.status
    assert st.phase == Phase.FAILED
    assert st.message == "probe: not a video: invalid data found"
    assert cond(st, "Failed") == ("True", "ProbeFailed")
    assert cond(st, "Ready") == ("False", "TranscodeFailed")
    assert agg.to_start == {}
    out = outcome(spec(), st)
    assert out.processing_state == ProcessingState.ERROR
    assert out.processing_error == "probe: not a video: invalid data found"


def test_probe_without_result_or_with_garbage_fails() -> None:
    obs = StepObservation(name="p", succeeded=1, finished="Complete", result=None)
    assert aggregate(spec(), {PROBE: obs}, None, now=T0).status.phase == Phase.FAILED
    obs = StepObservation(name="p", succeeded=1, finished="Complete", result={"width": "x"})
    st = aggregate(spec(), {PROBE: obs}, None, now=T0).status
    assert st.phase == Phase.FAILED
    assert st.message and "invalid" in st.message


def test_a_rendition_failing_for_good_fails_the_transcode_and_keeps_partial_outputs() -> None:
    steps = all_done()
    steps[rendition_step("1080p")] = StepObservation(
        name="r", failed=1, active=0, finished="Failed", reason="DeadlineExceeded"
    )
    agg = aggregate(spec(), steps, None, now=T0)
    st = agg.status
    assert st.phase == Phase.FAILED
    assert st.message == "1080p: took longer than its deadline"
    assert cond(st, "Failed") == ("True", "RenditionFailed")
    assert cond(st, "Playable")[0] == "True"
    assert list(converted_files(st)) == ["120p", "360p", "720p"]


def test_failed_phase_starts_nothing_more() -> None:
    steps = {
        PROBE: probe_done(),
        rendition_step("120p"): StepObservation(
            name="r", failed=1, finished="Failed", result={"error": "bad"}
        ),
    }
    agg = aggregate(spec(), steps, None, now=T0)
    assert agg.status.phase == Phase.FAILED
    assert agg.to_start == {}


def test_retrying_step_counts_attempts_and_stays_running() -> None:
    steps = {
        PROBE: probe_done(),
        rendition_step("120p"): StepObservation(name="r", failed=2, active=1),
    }
    st = aggregate(spec(), steps, None, now=T0).status
    assert st.renditions and st.renditions["120p"].phase == StepPhase.RUNNING
    assert st.renditions["120p"].attempts == 3
    assert st.phase == Phase.TRANSCODING


def test_rendition_complete_without_its_output_is_a_failure() -> None:
    steps = all_done()
    steps[rendition_step("360p")] = StepObservation(
        name="r", succeeded=1, finished="Complete", result={"renditions": []}
    )
    st = aggregate(spec(), steps, None, now=T0).status
    assert st.phase == Phase.FAILED
    assert st.message and "without a result for 360p" in st.message


def test_finished_steps_survive_their_jobs_ttl() -> None:
    done = aggregate(spec(), all_done(), None, now=T0).status
    again = aggregate(spec(), {}, done, now=T1)
    assert again.status.phase == Phase.SUCCEEDED
    assert converted_files(again.status) == converted_files(done)
    assert again.to_start == {}
    assert again.status.conditions == done.conditions  # no transition: times kept


def test_finished_steps_keep_their_record_when_results_are_not_read_again() -> None:
    # A finished CR's later passes (resync, restart) read no Job results: the Jobs are still
    # there, finished, with no result. The video must stay ready, not turn into "finished without
    # a result" (what every video did on its first resync after it was ready).
    steps = all_done()
    done = aggregate(spec(), steps, None, now=T0).status
    unread = {
        key: StepObservation(
            name=obs.name, succeeded=obs.succeeded, failed=obs.failed, finished=obs.finished
        )
        for key, obs in steps.items()
    }
    again = aggregate(spec(), unread, done, now=T1).status
    assert again.phase == Phase.SUCCEEDED
    assert converted_files(again) == converted_files(done)
    assert again.thumbnail == done.thumbnail
    # The same unread steps without a record are still a failure (nothing to fall back on).
    assert aggregate(spec(), unread, None, now=T1).status.phase == Phase.FAILED


def test_superseded_previous_status_is_ignored() -> None:
    done = aggregate(spec(), all_done(), None, now=T0).status
    new_spec = spec(transcodeGeneration=1)
    assert spec_hash(new_spec) != spec_hash(spec())
    agg = aggregate(new_spec, {}, done, now=T1)
    assert agg.status.phase == Phase.PENDING
    assert agg.status.renditions is None
    assert list(agg.to_start) == [PROBE]
    ready = next(c for c in agg.status.conditions or [] if c.type == "Ready")
    assert ready.status == "False" and ready.last_transition_time == T1


def test_priority_does_not_change_the_spec_hash() -> None:
    assert spec_hash(spec(priority=50)) == spec_hash(spec())
    assert spec_hash(spec(strategy="SinglePass")) != spec_hash(spec())


def test_condition_transition_time_is_kept_while_status_holds() -> None:
    first = aggregate(spec(), {PROBE: RUNNING}, None, now=T0).status
    second = aggregate(spec(), {PROBE: probe_done()}, first, now=T1).status
    times = {c.type: c.last_transition_time for c in second.conditions or []}
    assert times == {"Ready": T0, "Playable": T0, "Failed": T0}
    third = aggregate(spec(), all_done(), second, now=T1).status
    times = {c.type: c.last_transition_time for c in third.conditions or []}
    assert times["Ready"] == T1 and times["Failed"] == T0


def test_single_pass_runs_one_ladder_step_for_all_rungs() -> None:
    s = spec(strategy="SinglePass")
    agg = aggregate(s, {PROBE: probe_done(1280, 720)}, None, now=T0)
    assert set(agg.to_start) == {LADDER, THUMBNAIL}
    assert [r.name for r in agg.to_start[LADDER]] == ["120p", "360p", "720p"]
    running = aggregate(s, {PROBE: probe_done(1280, 720), LADDER: RUNNING}, None, now=T0)
    assert running.status.renditions
    assert {r.phase for r in running.status.renditions.values()} == {StepPhase.RUNNING}
    assert LADDER not in running.to_start
    ladder = StepObservation(
        name="l",
        succeeded=1,
        finished="Complete",
        result={"renditions": [rendition_result(n, h) for n, h in ALL[:3]]},
    )
    st = aggregate(
        s, {PROBE: probe_done(1280, 720), LADDER: ladder, THUMBNAIL: THUMB_DONE}, None, now=T0
    ).status
    assert st.phase == Phase.SUCCEEDED
    assert list(converted_files(st)) == ["120p", "360p", "720p"]


def test_single_pass_failure_fails_every_rendition() -> None:
    s = spec(strategy="SinglePass", thumbnail=False)
    ladder = StepObservation(
        name="l",
        failed=3,
        finished="Failed",
        reason="BackoffLimitExceeded",
        message="Job has reached the specified backoff limit",
    )
    st = aggregate(s, {PROBE: probe_done(640, 360), LADDER: ladder}, None, now=T0).status
    assert st.phase == Phase.FAILED
    assert st.renditions and {r.phase for r in st.renditions.values()} == {StepPhase.FAILED}
    assert st.message and st.message.startswith("120p: failed 3 times")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"width": 1}', {"width": 1}),
        ('{"result": {"poster": "k"}}', {"poster": "k"}),
        ('log line\n{"progress": {"percent": 50}}\n{"result": {"error": "bad"}}', {"error": "bad"}),
        ('{"progress": {"percent": 50}}', None),
        ("Traceback: boom", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_result(text: str | None, expected: dict[str, Any] | None) -> None:
    assert parse_result(text) == expected


def test_long_failure_messages_are_clipped() -> None:
    obs = StepObservation(name="p", failed=1, finished="Failed", result={"error": "x" * 2000})
    st = aggregate(spec(), {PROBE: obs}, None, now=T0).status
    assert st.message and len(st.message) <= 512
