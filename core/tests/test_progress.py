"""Live progress: the transcoder's progress lines, folded into the status's step-count progress."""

from __future__ import annotations

from typing import Any

import pytest
from videoflix_core.status import (
    LADDER,
    PROBE,
    THUMBNAIL,
    StepObservation,
    aggregate,
    live_progress,
    parse_progress,
    rendition_step,
    running_steps,
)
from videoflix_core.transcode import Phase, VideoTranscodeSpec, VideoTranscodeStatus

T0 = "2026-01-01T00:00:00Z"
RUNNING = StepObservation(name="r", active=1, started_at=T0)
QUEUED = StepObservation(name="q", suspended=True)


def spec(**extra: Any) -> VideoTranscodeSpec:
    data = {"videoId": 42, "source": {"bucket": "media", "key": "videos/42/source/a.mp4"}}
    data.update(extra)
    return VideoTranscodeSpec.model_validate(data)


def probe_done(height: int = 720) -> StepObservation:
    result = {
        "durationSeconds": 3.0,
        "width": height * 16 // 9,
        "height": height,
        "rotation": 0,
        "fps": 25.0,
        "videoCodec": "h264",
        "audioCodec": None,
        "bitrate": 900000,
    }
    return StepObservation(name="p", succeeded=1, finished="Complete", result=result)


def rendition_done(name: str, height: int) -> StepObservation:
    output = {
        "name": name,
        "width": height * 16 // 9,
        "height": height,
        "bitrate": 100000,
        "bytes": 1000,
        "durationSeconds": 3.0,
        "encodeSeconds": 1.0,
        "file": f"videos/42/{name}/video.mp4",
        "playlist": f"videos/42/{name}/index.m3u8",
    }
    return StepObservation(
        name=f"j-{name}", succeeded=1, finished="Complete", result={"renditions": [output]}
    )


def transcoding() -> VideoTranscodeStatus:
    """720p source, default ladder: 120p/360p/720p + thumbnail = 4 steps of 95 %."""
    steps = {
        PROBE: probe_done(),
        rendition_step("120p"): RUNNING,
        rendition_step("360p"): RUNNING,
        rendition_step("720p"): QUEUED,
        THUMBNAIL: QUEUED,
    }
    status = aggregate(spec(), steps, None, now=T0).status
    assert status.phase == Phase.TRANSCODING and status.progress == 5
    return status


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"progress": {"percent": 42.5, "speed": 1.3}}', 42.5),
        # The last well-formed line wins; garbage, partial and other JSON lines are skipped.
        ('{"progress": {"percent": 10}}\n{"progress": {"percent": 20}}\n', 20.0),
        ('{"progress": {"percent": 10}}\nffmpeg noise\n{"progress": {"perc', 10.0),
        ('ss": 1.0}}\n{"progress": {"percent": 33, "speed": null}}', 33.0),
        ('{"progress": {"percent": 60}}\n{"result": {"renditions": []}}', 60.0),
        ('{"progress": {"percent": 150}}', 100.0),
        ('{"progress": {"percent": -3}}', 0.0),
        ('{"progress": {"percent": "50"}}', None),
        ('{"progress": {"percent": true}}', None),
        ('{"progress": {"percent": NaN}}\n', None),
        ('{"progress": 50}', None),
        ("[1, 2]", None),
        ("", None),
        (None, None),
        ("\x00\xff not json at all", None),
    ],
)
def test_parse_progress(text: str | None, expected: float | None) -> None:
    assert parse_progress(text) == expected


def test_running_steps_are_those_the_status_says_run() -> None:
    assert running_steps(transcoding()) == {rendition_step("120p"), rendition_step("360p"), LADDER}
    probing = aggregate(spec(), {PROBE: RUNNING}, None, now=T0).status
    assert running_steps(probing) == {PROBE}


def test_live_progress_adds_the_running_share_between_step_counts() -> None:
    status = transcoding()
    assert live_progress(status, {}) == 5
    # Half of one of four steps: 95 / 4 / 2 = 11.
    assert live_progress(status, {rendition_step("120p"): 50.0}) == 5 + 11
    both = live_progress(status, {rendition_step("120p"): 50.0, rendition_step("360p"): 50.0})
    assert both == 5 + 23
    # Strictly between this step count (5) and the next one (one step done: 28).
    after_one = aggregate(
        spec(),
        {
            PROBE: probe_done(),
            rendition_step("120p"): rendition_done("120p", 120),
            rendition_step("360p"): RUNNING,
            rendition_step("720p"): QUEUED,
            THUMBNAIL: QUEUED,
        },
        None,
        now=T0,
    ).status
    assert after_one.progress == 5 + 23
    assert 5 < live_progress(status, {rendition_step("120p"): 90.0}) < after_one.progress
    # Everything at 100 % is still not done.
    assert live_progress(status, {k: 100.0 for k in ("a", "b", "c", "d", "e")}) == 99


def test_live_progress_weights_the_single_pass_ladder_as_every_rung() -> None:
    status = transcoding()  # 3 rungs + thumbnail
    assert live_progress(status, {LADDER: 50.0}) == 5 + int(95 * 1.5 / 4)


def test_live_progress_never_goes_back_for_the_same_spec_and_generation() -> None:
    status = transcoding()
    earlier = status.model_copy(update={"progress": 40})
    assert live_progress(status, {}, earlier) == 40
    assert live_progress(status, {rendition_step("120p"): 10.0}, earlier) == 40
    # A new generation (or source) starts over: its previous status says nothing.
    other = aggregate(spec(transcodeGeneration=1), {PROBE: probe_done()}, None, now=T0).status
    assert live_progress(status, {}, other.model_copy(update={"progress": 80})) == 5
    # Failed keeps what was shown, and does not add running shares.
    failed = status.model_copy(update={"phase": Phase.FAILED})
    assert live_progress(failed, {rendition_step("120p"): 90.0}, earlier) == 40


def test_live_progress_reaches_100_only_when_succeeded() -> None:
    status = transcoding()
    near = status.model_copy(update={"progress": 99})
    assert live_progress(status, {rendition_step("120p"): 100.0}, near) == 99
    done = status.model_copy(update={"phase": Phase.SUCCEEDED, "progress": 100})
    assert live_progress(done, {}) == 100
    probing = VideoTranscodeStatus(phase=Phase.PROBING, progress=0)
    assert live_progress(probing, {PROBE: 70.0}) == 0
    # Garbage readings are clamped, never lower the aggregate.
    assert live_progress(status, {rendition_step("120p"): -50.0}) == 5
    assert live_progress(status, {rendition_step("120p"): float("nan")}) == 5
