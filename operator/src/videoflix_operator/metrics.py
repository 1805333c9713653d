"""Prometheus metrics, served on their own port (`VIDEOFLIX_METRICS_PORT`)."""

from __future__ import annotations

from collections import Counter as Tally
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
RECONCILE_ERRORS = Counter("videoflix_reconcile_errors_total", "Failed reconciles", ["kind"])
RECONCILE_SECONDS = Histogram(
    "videoflix_reconcile_duration_seconds",
    "Time of one reconcile",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
QUEUE_DEPTH = Gauge("videoflix_queue_depth", "Transcode Jobs suspended behind the cap")
RUNNING_JOBS = Gauge("videoflix_running_jobs", "Transcode Jobs running (not suspended)")

_phases: dict[str, str] = {}


def start(port: int) -> None:
    if port:
        start_http_server(port)


def track_phase(key: str, phase: str | None) -> None:
    """Remember the phase of one CR (None: gone) and refresh the by-phase gauge."""
    if phase is None:
        _phases.pop(key, None)
    else:
        _phases[key] = phase
    counts = Tally(_phases.values())
    for p in Phase:
        TRANSCODES.labels(phase=p.value).set(counts.get(p.value, 0))


def _seconds(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    try:
        a = datetime.fromisoformat(start.replace("Z", "+00:00"))
        b = datetime.fromisoformat(end.replace("Z", "+00:00"))
    except ValueError:
        return None
    return max(0.0, (b - a).total_seconds())


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
            if out and out.duration_seconds and out.encode_seconds:
                ENCODE_SPEED.labels(rendition=name).observe(
                    out.duration_seconds / out.encode_seconds
                )
        elif rendition.phase == StepPhase.FAILED:
            JOBS_FAILED.labels(rendition=name).inc()
