"""Pure aggregation: what the transcode steps did → the `VideoTranscode` status and the videos row.

The operator feeds it observations of Jobs (and their pods' termination messages); the embedded mode
feeds it observations of local subprocesses. Plain data in, plain data out: no Kubernetes client
types,
no clock (callers pass `now`), so every transition is unit-tested without a cluster.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ValidationError

from videoflix_core.chunks import Chunk, chunk_plan, parse_indexes, plan_chunks
from videoflix_core.ladder import DEFAULT_LADDER, Rung, ladder_from_spec, plan_ladder
from videoflix_core.states import ProcessingState
from videoflix_core.transcode import (
    ChunkProgress,
    Condition,
    Phase,
    ProbeResult,
    RenditionOutput,
    RenditionStatus,
    StepPhase,
    StepStatus,
    Strategy,
    ThumbnailOutput,
    ThumbnailStatus,
    VideoTranscodeSpec,
    VideoTranscodeStatus,
)

PROBE = "probe"
THUMBNAIL = "thumbnail"
LADDER = "ladder"
RENDITION_PREFIX = "rendition/"
# Chunked renditions (issue 14): one Indexed Job per rung (`chunks/<name>`; SinglePass: one
# `chunks` Job for every rung), the audio once (`audio`), then `assemble/<name>` per rung.
CHUNKS = "chunks"
CHUNKS_PREFIX = "chunks/"
AUDIO = "audio"
ASSEMBLE_PREFIX = "assemble/"

# Share of the progress bar the probe stands for; the rest is split over encode steps.
_PROBE_WEIGHT = 5
_MAX_MESSAGE = 512


def rendition_step(name: str) -> str:
    return RENDITION_PREFIX + name


def chunk_step(name: str) -> str:
    return CHUNKS_PREFIX + name


def assemble_step(name: str) -> str:
    return ASSEMBLE_PREFIX + name


def is_chunk_step(step: str) -> bool:
    """An Indexed Job's step: its verdict and indexes say it all (no result is read)."""
    return step == CHUNKS or step.startswith(CHUNKS_PREFIX)


@dataclass(frozen=True)
class StepObservation:
    """What one unit of work (a Job, or a local subprocess in embedded mode) is doing now.

    `finished` is "Complete"/"Failed" once it is over for good (retries exhausted or a bad-input
    exit);
    `failed` counts failed attempts so far, `active` running ones. `result` is the parsed result
    JSON of
    the attempt that decided it; `reason`/`message` explain a failure without a result (deadline,
    ...).
    """

    name: str
    suspended: bool = False
    active: int = 0
    succeeded: int = 0
    failed: int = 0
    finished: Literal["Complete", "Failed"] | None = None
    reason: str | None = None
    message: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    result: Mapping[str, Any] | None = None
    # An Indexed Job's `status.completedIndexes` / `failedIndexes` ("0-3,5").
    completed_indexes: str | None = None
    failed_indexes: str | None = None


def parse_result(text: str | None) -> dict[str, Any] | None:
    """The transcoder's result from a termination message or stdout tail.

    Accepts the bare result JSON, `{"result": …}`, or log text whose last JSON line is either (the
    `FallbackToLogsOnError` case, where Kubernetes puts the log tail into the message).
    """
    if not text:
        return None
    candidates = [text.strip(), *reversed(text.strip().splitlines())]
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict):
            inner = value.get("result", value)
            if isinstance(inner, dict) and "progress" not in inner:
                return inner
    return None


def parse_progress(text: str | None) -> float | None:
    """The percent of the last well-formed `{"progress": {"percent": …}}` line in a log tail.

    The tail may start mid-line and hold anything else (FFmpeg noise, a cut-off last line): such
    lines are skipped. Percentages are clamped to 0-100; None when no line says anything usable.
    """
    for line in reversed((text or "").splitlines()):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            value = json.loads(line)
        except ValueError:
            continue
        inner = value.get("progress") if isinstance(value, dict) else None
        percent = inner.get("percent") if isinstance(inner, dict) else None
        if isinstance(percent, int | float) and not isinstance(percent, bool):
            if percent != percent:  # NaN
                continue
            return max(0.0, min(100.0, float(percent)))
    return None


def _clip(message: str | None) -> str | None:
    if message is None:
        return None
    message = " ".join(message.split())
    return message if len(message) <= _MAX_MESSAGE else message[: _MAX_MESSAGE - 1] + "…"


def _failure_message(obs: StepObservation) -> str:
    if obs.result and isinstance(obs.result.get("error"), str):
        return str(obs.result["error"])
    if obs.reason == "DeadlineExceeded":
        return "took longer than its deadline"
    if obs.reason == "BackoffLimitExceeded":
        detail = f": {obs.message}" if obs.message else ""
        return f"failed {obs.failed} times{detail}"
    return obs.message or obs.reason or "failed"


def step_phase(obs: StepObservation) -> StepPhase:
    if obs.finished == "Complete":
        return StepPhase.SUCCEEDED
    if obs.finished == "Failed":
        return StepPhase.FAILED
    if obs.suspended:
        return StepPhase.QUEUED
    return StepPhase.RUNNING


def _recorded(obs: StepObservation | None, previous: StepStatus | None) -> bool:
    """Whether the step's status comes from what was recorded when it finished: its Job is gone
    (TTL), or its result was not read this time (a finished CR reads no Job results again, and a
    Job's pods may be gone). A finished step never changes, so the record still holds."""
    if obs is None:
        return True
    return (
        obs.finished is not None
        and obs.result is None
        and previous is not None
        and previous.phase.is_final
    )


def _base(obs: StepObservation | None, previous: StepStatus | None) -> StepStatus:
    if obs is None or _recorded(obs, previous):
        if previous is not None and previous.phase.is_final:
            return StepStatus.model_validate(previous.model_dump())
        return StepStatus()
    phase = step_phase(obs)
    return StepStatus(
        phase=phase,
        job=obs.name,
        attempts=obs.succeeded + obs.failed + obs.active,
        started_at=obs.started_at,
        finished_at=obs.finished_at if phase.is_final else None,
        message=_clip(_failure_message(obs)) if phase == StepPhase.FAILED else None,
    )


def probe_status(obs: StepObservation | None, previous: StepStatus | None) -> StepStatus:
    return _base(obs, previous)


def probe_result(
    obs: StepObservation | None, previous: ProbeResult | None
) -> tuple[ProbeResult | None, str | None]:
    """(probe result, problem): the result once the probe succeeded, or why it is unusable."""
    if obs is None or obs.finished != "Complete":
        return previous, None
    if obs.result is None:
        return previous, None if previous else "the probe finished without a result"
    try:
        return ProbeResult.model_validate(obs.result), None
    except ValidationError as exc:
        return previous, f"the probe result is invalid ({exc.error_count()} errors)"


def rendition_status(
    obs: StepObservation | None, rung: Rung, previous: RenditionStatus | None
) -> RenditionStatus:
    """Status of one rendition; with SinglePass `obs` is the one ladder step shared by all rungs."""
    base = _base(obs, previous)
    status = RenditionStatus(**base.model_dump(), height=rung.height)
    if obs is None or _recorded(obs, previous):
        if previous is not None and previous.phase.is_final:
            status.output = previous.output
        return status
    if status.phase == StepPhase.SUCCEEDED:
        output = _rendition_output(obs.result, rung.name)
        if output is None:
            status.phase = StepPhase.FAILED
            status.message = f"{obs.name} finished without a result for {rung.name}"
        status.output = output
    return status


def _rendition_output(result: Mapping[str, Any] | None, name: str) -> RenditionOutput | None:
    if not result:
        return None
    for entry in result.get("renditions", []):
        if isinstance(entry, dict) and entry.get("name") == name:
            try:
                return RenditionOutput.model_validate(entry)
            except ValidationError:
                return None
    return None


def thumbnail_status(
    obs: StepObservation | None, previous: ThumbnailStatus | None
) -> ThumbnailStatus:
    base = _base(obs, previous)
    status = ThumbnailStatus(**base.model_dump())
    if obs is None or _recorded(obs, previous):
        if previous is not None and previous.phase.is_final:
            status.output = previous.output
        return status
    if status.phase == StepPhase.SUCCEEDED:
        try:
            status.output = ThumbnailOutput.model_validate(obs.result or {})
        except ValidationError:
            status.phase = StepPhase.FAILED
            status.message = "the thumbnail step finished without a result"
    return status


def spec_hash(spec: VideoTranscodeSpec) -> str:
    """Short stable hash of everything that defines the work (not `priority`): it names the Jobs, so
    a changed source or ladder gets new Jobs and the old ones are recognisably superseded."""
    work = spec.model_dump(mode="json", by_alias=True, exclude={"priority"})
    digest = hashlib.sha256(json.dumps(work, sort_keys=True).encode()).hexdigest()
    return digest[:8]


@dataclass
class Aggregate:
    """The status plus what the caller should start next (step key → rung, None for
    probe/thumbnail)."""

    status: VideoTranscodeStatus
    rungs: list[Rung] = field(default_factory=list)
    to_start: dict[str, list[Rung]] = field(default_factory=dict)
    # The chunk plan when the renditions are chunked (empty: unchunked), and whether the
    # assembled rungs get the audio step's track (False: a silent source).
    chunks: list[Chunk] = field(default_factory=list)
    with_audio: bool = False


def aggregate(
    spec: VideoTranscodeSpec,
    steps: Mapping[str, StepObservation],
    previous: VideoTranscodeStatus | None,
    *,
    now: str,
    generation: int | None = None,
    ladder: Iterable[Rung] = DEFAULT_LADDER,
    chunk_seconds: float = 0.0,
) -> Aggregate:
    """Fold the observed steps of the current spec into the full status.

    `steps` is keyed by step key (`probe`, `thumbnail`, `ladder`, `rendition/<name>`, and for
    chunked renditions `chunks/<name>` or `chunks`, `audio`, `assemble/<name>`) and holds only
    steps of the current spec. `chunk_seconds` > 0 chunks long constant-rate sources
    (`videoflix_core.chunks.chunk_plan`). `previous` is the last written status; it is ignored
    when it belongs to another spec (superseded) except for condition transition times.
    """
    current_hash = spec_hash(spec)
    prev = previous if previous is not None and previous.spec_hash == current_hash else None
    status = VideoTranscodeStatus(
        observed_generation=generation,
        transcode_generation=spec.transcode_generation,
        spec_hash=current_hash,
    )
    result = Aggregate(status=status)

    status.probe = probe_status(steps.get(PROBE), prev.probe if prev else None)
    source, problem = probe_result(steps.get(PROBE), prev.source if prev else None)
    status.source = source
    if problem is not None:
        status.probe.phase = StepPhase.FAILED
        status.probe.message = problem
    if status.probe.phase == StepPhase.PENDING:
        result.to_start[PROBE] = []

    if status.probe.phase == StepPhase.SUCCEEDED and source is not None:
        rungs = plan_ladder(source, ladder_from_spec(spec.renditions, ladder))
        result.rungs = rungs
        prev_r = (prev.renditions or {}) if prev else {}
        renditions: dict[str, RenditionStatus] = {}
        chunks = _chunking(spec, source, steps, prev_r, chunk_seconds)
        if chunks:
            result.chunks = chunks
            _aggregate_chunked(spec, source, rungs, chunks, steps, prev, result, renditions)
        elif spec.strategy == Strategy.SINGLE_PASS:
            obs = steps.get(LADDER)
            for rung in rungs:
                renditions[rung.name] = rendition_status(obs, rung, prev_r.get(rung.name))
            if all(r.phase == StepPhase.PENDING for r in renditions.values()):
                result.to_start[LADDER] = rungs
        else:
            for rung in rungs:
                key = rendition_step(rung.name)
                renditions[rung.name] = rendition_status(
                    steps.get(key), rung, prev_r.get(rung.name)
                )
                if renditions[rung.name].phase == StepPhase.PENDING:
                    result.to_start[key] = [rung]
        status.renditions = renditions
        if spec.thumbnail:
            status.thumbnail = thumbnail_status(
                steps.get(THUMBNAIL), prev.thumbnail if prev else None
            )
            if status.thumbnail.phase == StepPhase.PENDING:
                result.to_start[THUMBNAIL] = []

    _summarize(status, previous.conditions if previous else None, now)
    if status.phase == Phase.FAILED:
        result.to_start = {}  # a required step failed for good: start nothing more
    return result


def _chunking(
    spec: VideoTranscodeSpec,
    source: ProbeResult,
    steps: Mapping[str, StepObservation],
    prev_r: Mapping[str, RenditionStatus],
    chunk_seconds: float,
) -> list[Chunk] | None:
    """The chunk plan of this spec's renditions, None for the unchunked path.

    Sticky once work started, so a changed setting never runs both paths for one spec: a
    recorded chunk length keeps its plan, an unchunked step already seen keeps that path.
    """
    recorded = next((r.chunks for r in prev_r.values() if r.chunks is not None), None)
    if recorded is not None and recorded.seconds:
        return plan_chunks(source.duration_seconds, recorded.seconds)
    if any(k == LADDER or k.startswith(RENDITION_PREFIX) for k in steps) or any(
        r.phase != StepPhase.PENDING for r in prev_r.values()
    ):
        return None
    return chunk_plan(source, chunk_seconds)


def _chunk_progress(
    obs: StepObservation | None, chunks: list[Chunk], previous: ChunkProgress | None
) -> ChunkProgress:
    seconds = int(chunks[1].start - chunks[0].start)
    total = len(chunks)
    if obs is None:
        if previous is not None and previous.total == total:
            return ChunkProgress.model_validate(previous.model_dump())
        return ChunkProgress(total=total, seconds=seconds)
    done = parse_indexes(obs.completed_indexes)
    if obs.finished == "Complete":
        done = frozenset(range(total))  # the Job controller's verdict: every index succeeded
    return ChunkProgress(
        total=total,
        seconds=seconds,
        done=min(total, len(done)),
        completed_indexes=obs.completed_indexes or None,
        failed_indexes=obs.failed_indexes or None,
    )


def _chunked_rendition(
    chunk_obs: StepObservation | None,
    audio: StepStatus | None,
    assemble_obs: StepObservation | None,
    rung: Rung,
    chunks: list[Chunk],
    previous: RenditionStatus | None,
) -> RenditionStatus:
    """One chunked rung: its chunks' Indexed Job, then its assemble step; once assembled it
    is exactly a finished unchunked rendition (same output fields)."""
    if previous is not None and previous.phase.is_final and (
        assemble_obs is None or _recorded(assemble_obs, previous)
    ):
        return RenditionStatus.model_validate(previous.model_dump())
    progress = _chunk_progress(chunk_obs, chunks, previous.chunks if previous else None)
    if assemble_obs is not None:
        status = rendition_status(assemble_obs, rung, previous)
        status.chunks = progress
        # The rung started with its chunks, not with its assembly (durations, `runningSince`).
        started = chunk_obs.started_at if chunk_obs is not None else None
        status.started_at = started or (previous.started_at if previous else None) or (
            status.started_at
        )
        return status
    status = RenditionStatus(height=rung.height, chunks=progress)
    if chunk_obs is not None:
        status.job = chunk_obs.name
        status.started_at = chunk_obs.started_at
        # Retries of indexes count, not the indexes themselves (a StepRetried Event each).
        status.attempts = 1 + chunk_obs.failed
        status.phase = step_phase(chunk_obs)
        if chunk_obs.finished == "Complete":
            status.phase = StepPhase.RUNNING  # waits for the audio, then assembles
        elif chunk_obs.finished == "Failed":
            failed = f"chunk {progress.failed_indexes} " if progress.failed_indexes else ""
            status.message = _clip(f"{failed}failed: {_failure_message(chunk_obs)}")
            status.finished_at = chunk_obs.finished_at
    elif progress.done == progress.total:
        status.phase = StepPhase.RUNNING  # the chunks' Job is gone (TTL) after it finished
    if audio is not None and audio.phase == StepPhase.FAILED and not status.phase.is_final:
        status.phase = StepPhase.FAILED
        status.message = _clip(f"audio: {audio.message or 'failed'}")
    return status


def _aggregate_chunked(
    spec: VideoTranscodeSpec,
    source: ProbeResult,
    rungs: list[Rung],
    chunks: list[Chunk],
    steps: Mapping[str, StepObservation],
    prev: VideoTranscodeStatus | None,
    result: Aggregate,
    renditions: dict[str, RenditionStatus],
) -> None:
    """Statuses and next steps of chunked renditions: chunks (one Indexed Job per rung, or one
    for every rung with SinglePass) and the audio once, then each rung's assembly."""
    prev_r = (prev.renditions or {}) if prev else {}
    audio_obs = steps.get(AUDIO)
    with_audio = source.audio_codec is not None
    audio: StepStatus | None = None
    if with_audio:
        audio = _base(audio_obs, prev.audio if prev else None)
        if audio_obs is not None and audio.phase == StepPhase.SUCCEEDED and audio_obs.result:
            # The transcoder found no audio stream after all: assemble video only.
            with_audio = bool(audio_obs.result.get("audio", True))
        result.status.audio = audio
    result.with_audio = with_audio
    single = spec.strategy == Strategy.SINGLE_PASS
    for rung in rungs:
        chunk_obs = steps.get(CHUNKS if single else chunk_step(rung.name))
        renditions[rung.name] = _chunked_rendition(
            chunk_obs,
            audio,
            steps.get(assemble_step(rung.name)),
            rung,
            chunks,
            prev_r.get(rung.name),
        )
    unfinished = [r for r in rungs if not renditions[r.name].phase.is_final]
    for rung in unfinished:
        status = renditions[rung.name]
        progress = status.chunks
        chunks_done = progress is not None and progress.done == progress.total
        if status.phase == StepPhase.PENDING and not single:
            result.to_start[chunk_step(rung.name)] = [rung]
        audio_done = not with_audio or (audio is not None and audio.phase == StepPhase.SUCCEEDED)
        if chunks_done and audio_done and assemble_step(rung.name) not in steps:
            result.to_start[assemble_step(rung.name)] = [rung]
    if single and any(renditions[r.name].phase == StepPhase.PENDING for r in unfinished):
        result.to_start[CHUNKS] = unfinished
    if with_audio and unfinished and audio is not None and audio.phase == StepPhase.PENDING:
        result.to_start[AUDIO] = unfinished
    done = sum(r.chunks.done for r in renditions.values() if r.chunks is not None)
    total = sum(r.chunks.total for r in renditions.values() if r.chunks is not None)
    result.status.chunks = f"{done}/{total}"


def _summarize(
    status: VideoTranscodeStatus, previous_conditions: list[Condition] | None, now: str
) -> None:
    """Overall phase, progress, ready count, message and conditions from the step statuses."""
    probe = status.probe or StepStatus()
    renditions = status.renditions or {}
    done = [n for n, r in renditions.items() if r.phase == StepPhase.SUCCEEDED]
    failed = {n: r for n, r in renditions.items() if r.phase == StepPhase.FAILED}
    thumb = status.thumbnail

    failure: tuple[str, str] | None = None
    if probe.phase == StepPhase.FAILED:
        failure = ("ProbeFailed", f"probe: {probe.message or 'failed'}")
    elif failed:
        name, first = sorted(failed.items(), key=lambda kv: renditions_order(kv[1]))[0]
        failure = ("RenditionFailed", f"{name}: {first.message or 'failed'}")

    steps_total = len(renditions) + (1 if thumb is not None else 0)
    steps_done = len(done) + len(failed) + (1 if thumb is not None and thumb.phase.is_final else 0)
    if failure is not None:
        status.phase = Phase.FAILED
        status.message = _clip(failure[1])
    elif probe.phase in (StepPhase.PENDING, StepPhase.QUEUED):
        status.phase = Phase.PENDING
        status.message = "Waiting for a free slot" if probe.phase == StepPhase.QUEUED else None
    elif probe.phase == StepPhase.RUNNING or status.renditions is None:
        status.phase = Phase.PROBING
        status.message = None
    elif steps_done == steps_total:
        status.phase = Phase.SUCCEEDED
        status.message = (
            _clip(f"thumbnail: {thumb.message or 'failed'}")
            if thumb is not None and thumb.phase == StepPhase.FAILED
            else None
        )
    else:
        status.phase = Phase.TRANSCODING
        status.message = f"{len(done)}/{len(renditions)} renditions ready"
        if status.chunks is not None:
            status.message += f", {status.chunks} chunks encoded"

    if status.phase == Phase.SUCCEEDED:
        status.progress = 100
    elif status.renditions is None:
        status.progress = 0
    else:
        # A chunked rung in encoding counts its share of chunks done (assembly is the rest).
        partial = sum(
            0.9 * r.chunks.done / r.chunks.total
            for r in renditions.values()
            if r.chunks is not None and not r.phase.is_final
        )
        share = int((100 - _PROBE_WEIGHT) * (steps_done + partial) / max(steps_total, 1))
        status.progress = min(99, _PROBE_WEIGHT + share)
    status.ready = f"{len(done)}/{len(renditions)}" if status.renditions is not None else None
    status.current_step, status.attempts, status.running_since = on_call_summary(status)

    playable = bool(done)
    ready = status.phase == Phase.SUCCEEDED
    status.conditions = [
        _condition(
            "Ready",
            ready,
            "TranscodeSucceeded" if ready else _not_ready_reason(status.phase),
            "all planned renditions are ready" if ready else (status.message or ""),
            previous_conditions,
            now,
            status.observed_generation,
        ),
        _condition(
            "Playable",
            playable,
            "RenditionReady" if playable else "NoRenditionReady",
            f"playable in {', '.join(sorted(done, key=_height_of))}" if playable else "",
            previous_conditions,
            now,
            status.observed_generation,
        ),
        _condition(
            "Failed",
            failure is not None,
            failure[0] if failure else "NoFailure",
            failure[1] if failure else "",
            previous_conditions,
            now,
            status.observed_generation,
        ),
    ]


def on_call_summary(status: VideoTranscodeStatus) -> tuple[str | None, int, str | None]:
    """(steps running now, attempts over all steps, start of the longest-running step).

    Step names as `kubectl` shows them: `probe`, `thumbnail`, or the rendition's name."""
    steps: dict[str, StepStatus | None] = {
        PROBE: status.probe,
        **(status.renditions or {}),
        THUMBNAIL: status.thumbnail,
        AUDIO: status.audio,
    }
    running = {n: s for n, s in steps.items() if s is not None and s.phase == StepPhase.RUNNING}
    attempts = sum(s.attempts for s in steps.values() if s is not None)
    # RFC 3339 UTC times of one format: the smallest string is the earliest.
    since = min((s.started_at for s in running.values() if s.started_at), default=None)
    return (",".join(running) or None), attempts, since


def running_steps(status: VideoTranscodeStatus) -> set[str]:
    """Step keys that are running now by this status (a live percent of any other is stale)."""
    keys: set[str] = set()
    if status.probe is not None and status.probe.phase == StepPhase.RUNNING:
        keys.add(PROBE)
    if status.thumbnail is not None and status.thumbnail.phase == StepPhase.RUNNING:
        keys.add(THUMBNAIL)
    for name, rendition in (status.renditions or {}).items():
        if rendition.phase == StepPhase.RUNNING:
            keys.add(rendition_step(name))
            keys.add(LADDER)  # SinglePass: every rung runs in the one ladder step
    return keys


def live_progress(
    status: VideoTranscodeStatus,
    running: Mapping[str, float],
    previous: VideoTranscodeStatus | None = None,
) -> int:
    """The aggregate's step-count progress plus the live share of running steps.

    `running` maps step keys to the percent their transcoder last printed (callers pass running
    steps only). The ladder step stands for every rung. The result never drops below the progress
    `previous` reported for the same spec and generation (a live reading is an estimate, and a bar
    that jumps back looks broken) and reaches 100 only with Succeeded.
    """
    if status.phase == Phase.SUCCEEDED:
        return 100
    progress = status.progress
    if status.renditions is not None and status.phase != Phase.FAILED:
        total = len(status.renditions) + (1 if status.thumbnail is not None else 0)
        partial = sum(
            max(0.0, min(100.0, p)) * (len(status.renditions) if key == LADDER else 1)
            for key, p in running.items()
            if p == p  # NaN says nothing
        )
        progress += int((100 - _PROBE_WEIGHT) * partial / 100 / max(total, 1))
    if (
        previous is not None
        and previous.spec_hash == status.spec_hash
        and previous.transcode_generation == status.transcode_generation
    ):
        progress = max(progress, previous.progress)
    return max(0, min(99, progress))


def renditions_order(status: RenditionStatus) -> tuple[int, str]:
    return (status.height or 0, status.finished_at or "")


def _height_of(name: str) -> int:
    digits = name.rstrip("p")
    return int(digits) if digits.isdigit() else 0


def _not_ready_reason(phase: Phase) -> str:
    return {
        Phase.PENDING: "Pending",
        Phase.PROBING: "Probing",
        Phase.TRANSCODING: "Transcoding",
        Phase.FAILED: "TranscodeFailed",
    }.get(phase, "Unknown")


def _condition(
    type_: str,
    value: bool,
    reason: str,
    message: str,
    previous: list[Condition] | None,
    now: str,
    generation: int | None,
) -> Condition:
    status = "True" if value else "False"
    since = now
    for old in previous or []:
        if old.type == type_ and old.status == status:
            since = old.last_transition_time
    return Condition(
        type=type_,
        status=status,
        reason=reason,
        message=_clip(message) or "",
        last_transition_time=since,
        observed_generation=generation,
    )


def processing_state(phase: Phase) -> ProcessingState:
    """The frontend's state of a video for a transcode phase."""
    return {
        Phase.PENDING: ProcessingState.PENDING,
        Phase.PROBING: ProcessingState.PROCESSING,
        Phase.TRANSCODING: ProcessingState.PROCESSING,
        Phase.SUCCEEDED: ProcessingState.READY,
        Phase.FAILED: ProcessingState.ERROR,
    }[phase]


def converted_files(status: VideoTranscodeStatus) -> dict[str, dict[str, Any]]:
    """The videos row's `converted_files`: finished renditions only, lowest quality first.

    Shape: {name: {width, height, bitrate, peakBitrate, codecs, bytes, durationSeconds, file,
    playlist}} (keys in storage; peakBitrate/codecs None when the transcoder did not report them).
    """
    files: dict[str, dict[str, Any]] = {}
    for name, rendition in sorted(
        (status.renditions or {}).items(), key=lambda kv: (kv[1].height or 0, kv[0])
    ):
        if rendition.phase != StepPhase.SUCCEEDED or rendition.output is None:
            continue
        out = rendition.output
        files[name] = {
            "width": out.width,
            "height": out.height,
            "bitrate": out.bitrate,
            "peakBitrate": out.peak_bitrate,
            "codecs": out.codecs,
            "bytes": out.bytes,
            "durationSeconds": out.duration_seconds,
            "file": out.file,
            "playlist": out.playlist,
        }
    return files


@dataclass(frozen=True)
class Outcome:
    """What the videos row should say about one transcode generation."""

    video_id: int
    transcode_generation: int
    processing_state: ProcessingState
    converted_files: dict[str, dict[str, Any]]
    processing_error: str | None
    thumbnail: str | None
    sprite: str | None
    storyboard: str | None
    duration: float | None
    progress: int


def outcome(spec: VideoTranscodeSpec, status: VideoTranscodeStatus) -> Outcome:
    phase = Phase(status.phase)
    thumb = status.thumbnail.output if status.thumbnail and status.thumbnail.output else None
    return Outcome(
        video_id=spec.video_id,
        transcode_generation=spec.transcode_generation,
        processing_state=processing_state(phase),
        converted_files=converted_files(status),
        processing_error=status.message if phase == Phase.FAILED else None,
        thumbnail=thumb.poster if thumb else None,
        sprite=thumb.sprite if thumb else None,
        storyboard=thumb.vtt if thumb else None,
        duration=status.source.duration_seconds if status.source else None,
        progress=status.progress,
    )
