"""Where a step's result comes from once its work is over: the one rule of the operator and the
embedded mode.

A step reports its result twice: in its pod's termination message (stdout and the result file in
embedded mode) and as an object in storage, written after its outputs
(`videoflix_core.storage.step_result_key`). The message can be lost without the work being lost:
pods are garbage-collected, a Job is deleted by its TTL while the operator is down, the embedded
server is killed while its subprocess finishes. So a step that is over is decided, in order, by

1. a `Failed` verdict of its Job (or subprocess): a failure, with the message's reason if any;
2. the termination message's result;
3. the stored result object;
4. else nothing says what it did: run it again. A lost result is never a failure.

Only successes are stored: a failure's truth is the Job's own verdict, and a stored failure of a
transient attempt would turn a lost, retryable step into a permanent one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from videoflix_core.status import (
    ASSEMBLE_PREFIX,
    AUDIO,
    CHUNKS,
    CHUNKS_PREFIX,
    LADDER,
    PROBE,
    RENDITION_PREFIX,
    THUMBNAIL,
)
from videoflix_core.transcode import VideoTranscodeStatus

# What is known about how the step ended: its Job's (or process's) verdict, or None when the Job
# or process is gone without one (TTL-deleted, killed with the server).
Verdict = Literal["Complete", "Failed"] | None


class Decision(StrEnum):
    USE = "use"  # the step succeeded with `result`
    FAILED = "failed"  # the step failed for good (`result`: its error, when the message had one)
    RERUN = "rerun"  # nothing tells what the step did: run it again


class Source(StrEnum):
    MESSAGE = "message"
    STORED = "stored"


@dataclass(frozen=True)
class StepResult:
    decision: Decision
    result: Mapping[str, Any] | None = None
    source: Source | None = None


def is_success(result: Mapping[str, Any] | None) -> bool:
    """A result a succeeded step reports (a failure's result is `{"error": …}`)."""
    return isinstance(result, Mapping) and bool(result) and "error" not in result


def needs_stored(verdict: Verdict, message: Mapping[str, Any] | None) -> bool:
    """Whether `step_result` would look at the stored object: read it only then (one GET)."""
    return verdict != "Failed" and not is_success(message)


def step_result(
    verdict: Verdict,
    message: Mapping[str, Any] | None,
    stored: Mapping[str, Any] | None,
) -> StepResult:
    """Decide a finished (or vanished) step: see the module docstring for the order."""
    if verdict == "Failed":
        return StepResult(Decision.FAILED, message, Source.MESSAGE if message else None)
    if is_success(message):
        return StepResult(Decision.USE, message, Source.MESSAGE)
    if is_success(stored):
        return StepResult(Decision.USE, stored, Source.STORED)
    return StepResult(Decision.RERUN)


def parse_stored(raw: bytes | str | None) -> dict[str, Any] | None:
    """The stored result object's JSON; None when absent or not a success result (a torn or
    foreign object is treated as no result, which means a re-run, never a failure)."""
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) and is_success(value) else None


def step_recorded(previous: VideoTranscodeStatus | None, spec_hash: str, step: str) -> bool:
    """Whether the last written status of this spec already holds the step's final outcome: its
    result need not be read again (its pods and Job may be long gone), and it is never re-run."""
    if previous is None or previous.spec_hash != spec_hash:
        return False
    if step == PROBE:
        return previous.probe is not None and previous.probe.phase.is_final
    if step == THUMBNAIL:
        return previous.thumbnail is not None and previous.thumbnail.phase.is_final
    if step == AUDIO:
        return previous.audio is not None and previous.audio.phase.is_final
    renditions = previous.renditions or {}
    if step in (LADDER, CHUNKS):
        return bool(renditions) and all(r.phase.is_final for r in renditions.values())
    for prefix in (RENDITION_PREFIX, CHUNKS_PREFIX, ASSEMBLE_PREFIX):
        if step.startswith(prefix):
            rendition = renditions.get(step[len(prefix) :])
            return rendition is not None and rendition.phase.is_final
    return False
