"""Where a finished step's result comes from: message, else stored object, else re-run."""

from __future__ import annotations

import json

import pytest
from videoflix_core import storage
from videoflix_core.results import (
    Decision,
    Source,
    needs_stored,
    parse_stored,
    step_recorded,
    step_result,
)
from videoflix_core.transcode import (
    RenditionStatus,
    StepPhase,
    StepStatus,
    ThumbnailStatus,
    VideoTranscodeStatus,
)

OK = {"renditions": [{"name": "120p", "file": "videos/1/120p/video.mp4"}]}
OTHER = {"renditions": [{"name": "120p", "file": "videos/1/120p/other.mp4"}]}
ERROR = {"error": "source video cannot be decoded"}


def test_the_message_wins_and_the_store_is_not_read() -> None:
    assert not needs_stored("Complete", OK)
    assert step_result("Complete", OK, OTHER) == step_result("Complete", OK, None)
    decided = step_result("Complete", OK, None)
    assert (decided.decision, decided.result, decided.source) == (Decision.USE, OK, Source.MESSAGE)


@pytest.mark.parametrize("message", [None, {}, ERROR])
def test_a_complete_job_without_a_message_takes_the_stored_result(message: dict | None) -> None:
    assert needs_stored("Complete", message)
    decided = step_result("Complete", message, OK)
    assert (decided.decision, decided.result, decided.source) == (Decision.USE, OK, Source.STORED)


def test_a_vanished_job_takes_the_stored_result() -> None:
    """The Job was deleted by its TTL while the operator was down (or the embedded process was
    killed): no verdict, no message, the object is the result."""
    assert needs_stored(None, None)
    assert step_result(None, None, OK) == step_result("Complete", None, OK)


@pytest.mark.parametrize("verdict", ["Complete", None])
@pytest.mark.parametrize("stored", [None, {}, ERROR])
def test_nothing_known_is_a_rerun_never_a_failure(verdict: str | None, stored: dict | None) -> None:
    decided = step_result(verdict, None, stored)  # type: ignore[arg-type]
    assert decided.decision == Decision.RERUN
    assert decided.result is None


def test_a_failed_job_fails_with_its_message_and_ignores_the_store() -> None:
    assert not needs_stored("Failed", None)
    decided = step_result("Failed", ERROR, OK)
    assert (decided.decision, decided.result, decided.source) == (
        Decision.FAILED,
        ERROR,
        Source.MESSAGE,
    )
    # No message: the Job's own condition (deadline, backoff limit) says why.
    assert step_result("Failed", None, None).decision == Decision.FAILED


@pytest.mark.parametrize(
    ("raw", "parsed"),
    [
        (None, None),
        (b"", None),
        (b'{"renditions": [', None),  # torn
        (b"[1, 2]", None),
        (json.dumps(ERROR).encode(), None),
        (json.dumps(OK).encode(), OK),
        (json.dumps(OK), OK),
    ],
)
def test_parse_stored_accepts_only_success_results(raw: bytes | None, parsed: dict | None) -> None:
    assert parse_stored(raw) == parsed


def test_the_result_key_is_per_video_generation_spec_and_step() -> None:
    key = storage.step_result_key(42, 3, "ab12cd34", "rendition/720p")
    assert key == "videos/42/results/3-ab12cd34/rendition-720p.json"
    assert key.startswith(storage.results_prefix(42)) and key.startswith(storage.video_prefix(42))
    keys = {
        storage.step_result_key(v, g, h, s)
        for v in (1, 2)
        for g in (0, 1)
        for h in ("aaaa", "bbbb")
        for s in ("probe", "thumbnail", "ladder", "rendition/120p", "rendition/1080p")
    }
    assert len(keys) == 2 * 2 * 2 * 5
    for bad in (("../x", "aaaa"), ("probe", "a/b"), ("", "aaaa"), ("probe", "")):
        with pytest.raises(ValueError):
            storage.step_result_key(1, 0, bad[1], bad[0])
    with pytest.raises(ValueError):
        storage.step_result_key(1, -1, "aaaa", "probe")


def _status(spec_hash: str = "h1") -> VideoTranscodeStatus:
    return VideoTranscodeStatus(
        spec_hash=spec_hash,
        probe=StepStatus(phase=StepPhase.SUCCEEDED),
        renditions={
            "120p": RenditionStatus(phase=StepPhase.SUCCEEDED, height=120),
            "360p": RenditionStatus(phase=StepPhase.RUNNING, height=360),
        },
        thumbnail=ThumbnailStatus(phase=StepPhase.FAILED),
    )


def test_step_recorded_only_for_final_steps_of_the_same_spec() -> None:
    status = _status()
    assert step_recorded(status, "h1", "probe")
    assert step_recorded(status, "h1", "thumbnail")  # failed is final too
    assert step_recorded(status, "h1", "rendition/120p")
    assert not step_recorded(status, "h1", "rendition/360p")
    assert not step_recorded(status, "h1", "rendition/720p")  # not planned
    assert not step_recorded(status, "h1", "ladder")  # one rung still runs
    assert not step_recorded(status, "h2", "probe")  # another spec's status
    assert not step_recorded(None, "h1", "probe")
    assert not step_recorded(status, "h1", "something")
    assert status.renditions is not None
    status.renditions["360p"].phase = StepPhase.SUCCEEDED
    assert step_recorded(status, "h1", "ladder")
