"""Prometheus metrics, served on their own port (`VIDEOFLIX_METRICS_PORT`)."""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import Counter, Gauge, Histogram, start_http_server
from videoflix_core.transcode import Phase, StepPhase, VideoTranscodeStatus

TRANSCODES = Gauge("videoflix_transcodes", "VideoTranscodes by phase", ["phase"])
JOBS_CREATED = Counter("videoflix_jobs_created_total", "Jobs created", ["step", "rendition"])
JOBS_SUCCEEDED = Counter("videoflix_jobs_succeeded_total", "Steps succeeded", ["rendition"])
JOBS_FAILED = Counter("videoflix_jobs_failed_total", "Steps failed for good", ["rendition"])
JOB_DURATION = Histogram(
    "videoflix_job_duration_seconds",
    "Wall time of finished steps",
    ["rendition"],
    buckets=(1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)
ENCODE_SPEED = Histogram(
    "videoflix_encode_speed_ratio",
    "Media seconds encoded per wall second",
    ["rendition"],
    buckets=(0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32),
)
# kind: database, s3 or cluster (what the reconcile could not reach; see `error_kind`).
RECONCILE_ERRORS = Counter("videoflix_reconcile_errors_total", "Failed reconciles", ["kind"])
# Same name and label as the API's counter, so one alert covers both components.
DEPENDENCY_ERRORS = Counter(
    "videoflix_dependency_errors_total",
    "Calls to the database or S3 that failed",
    ["dependency"],
)
RECONCILE_SECONDS = Histogram(
    "videoflix_reconcile_duration_seconds",
    "Time of one reconcile",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
RECONCILE_QUEUE = Gauge(
    "videoflix_reconcile_queue_depth", "VideoTranscodes waiting for a reconcile worker"
)
QUEUE_DEPTH = Gauge("videoflix_queue_depth", "Transcode Jobs suspended behind the cap")
RUNNING_JOBS = Gauge("videoflix_running_jobs", "Transcode Jobs running (not suspended)")
MAX_RUNNING_JOBS = Gauge("videoflix_max_running_jobs", "Cap on transcode Jobs running at once")
# Heartbeat: an operator that is up (scraped) but no longer reconciles keeps an old value.
LAST_RECONCILE = Gauge(
    "videoflix_last_reconcile_timestamp_seconds", "Unix time the last reconcile pass finished"
)
OLDEST_ACTIVE_AGE = Gauge(
    "videoflix_oldest_active_transcode_age_seconds",
    "Age of the oldest VideoTranscode not yet Succeeded or Failed (0: none)",
)
OLDEST_RUNNING_STEP_AGE = Gauge(
    "videoflix_oldest_running_step_age_seconds",
    "How long the longest-running transcode step (Job) has been running (0: none)",
)


@dataclass(frozen=True)
class Tracked:
    """What the alerts need to know of one CR; no per-video label is ever exported."""

    phase: str
    created: float | None  # unix time of the CR's creation
    running_since: float | None  # unix time the oldest of its running steps started


_tracked: dict[str, Tracked] = {}
# CRs per phase, kept in step with `_tracked`: recounting it on every reconcile was O(CRs).
_phase_counts: Tally[str] = Tally()


def start(port: int, max_running_jobs: int = 0) -> None:
    MAX_RUNNING_JOBS.set(max_running_jobs)
    for phase in Phase:  # every phase is exported from the start, 0 until a CR enters it
        TRANSCODES.labels(phase=phase.value).set(_phase_counts[phase.value])
    # Ages are computed when scraped, so they grow while nothing reconciles (that is the point).
    # list(): one C-level copy under the GIL, so the event loop adding a CR meanwhile is harmless.
    OLDEST_ACTIVE_AGE.set_function(lambda: oldest_ages(list(_tracked.values()), time.time())[0])
    OLDEST_RUNNING_STEP_AGE.set_function(
        lambda: oldest_ages(list(_tracked.values()), time.time())[1]
    )
    if port:
        start_http_server(port)


def reconciled() -> None:
    LAST_RECONCILE.set_to_current_time()


def error_kind(exc: BaseException, database: bool) -> str:
    """What a failed reconcile could not reach: `database` (the caller knows it was the row
    write), `s3` (botocore raised), else `cluster` (the Kubernetes API)."""
    if database:
        return "database"
    module = type(exc).__module__.split(".")[0]
    if module in ("botocore", "boto3", "s3transfer"):
        return "s3"
    return "cluster"


def count_error(exc: BaseException, database: bool = False) -> None:
    kind = error_kind(exc, database)
    RECONCILE_ERRORS.labels(kind=kind).inc()
    if kind != "cluster":
        DEPENDENCY_ERRORS.labels(dependency=kind).inc()


def _timestamp(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def tracked(status: VideoTranscodeStatus, created: str | None) -> Tracked:
    return Tracked(str(status.phase), _timestamp(created), _timestamp(status.running_since))


def oldest_ages(items: Iterable[Tracked], now: float) -> tuple[float, float]:
    """(age of the oldest unfinished CR, age of the oldest running step), 0 when there is none."""
    active = [t for t in items if not Phase(t.phase).is_final]
    created = [t.created for t in active if t.created is not None]
    running = [t.running_since for t in active if t.running_since is not None]
    return (
        max(0.0, now - min(created)) if created else 0.0,
        max(0.0, now - min(running)) if running else 0.0,
    )


def track(key: str, status: VideoTranscodeStatus | None, created: str | None = None) -> None:
    """Remember one CR (None: gone) and refresh the by-phase gauge (O(1): only the phases it
    left and entered are set)."""
    # Replaced in place, never popped and re-added: the scrape thread iterates `_tracked`, and a
    # dict whose size changes under it raises (a 500 on /metrics).
    old = _tracked.pop(key, None) if status is None else _tracked.get(key)
    changed = {old.phase} if old is not None else set()
    if old is not None:
        _phase_counts[old.phase] -= 1
    if status is not None:
        new = _tracked[key] = tracked(status, created)
        _phase_counts[new.phase] += 1
        changed.add(new.phase)
    for phase in changed:
        TRANSCODES.labels(phase=phase).set(_phase_counts[phase])


def _seconds(start: str | None, end: str | None) -> float | None:
    a, b = _timestamp(start), _timestamp(end)
    if a is None or b is None:
        return None
    return max(0.0, b - a)


def observe_transitions(before: VideoTranscodeStatus | None, after: VideoTranscodeStatus) -> None:
    """Count steps that became final since `before`."""
    old = (before.renditions or {}) if before and before.spec_hash == after.spec_hash else {}
    for name, rendition in (after.renditions or {}).items():
        previous = old.get(name)
        if previous is not None and previous.phase == rendition.phase:
            continue
        if rendition.phase == StepPhase.SUCCEEDED:
            JOBS_SUCCEEDED.labels(rendition=name).inc()
            took = _seconds(rendition.started_at, rendition.finished_at)
            if took is not None:
                JOB_DURATION.labels(rendition=name).observe(took)
            out = rendition.output
            # A chunked rung's encodeSeconds is its assembly's: no encode speed to tell.
            if out and out.duration_seconds and out.encode_seconds and rendition.chunks is None:
                ENCODE_SPEED.labels(rendition=name).observe(
                    out.duration_seconds / out.encode_seconds
                )
        elif rendition.phase == StepPhase.FAILED:
            JOBS_FAILED.labels(rendition=name).inc()
