"""Pure decisions of the reconcile loop: observed Jobs + spec → status and actions.

`plan()` is level-based: it looks at what exists now (Jobs of this CR and the last written status)
and says what to create, delete and write, so create, resume, update and every Job event run the
very same function, and running it twice changes nothing the second time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from videoflix_core import storage
from videoflix_core.chunk_steps import intermediates_prefix
from videoflix_core.chunks import parse_indexes
from videoflix_core.status import (
    ASSEMBLE_PREFIX,
    AUDIO,
    CHUNKS,
    CHUNKS_PREFIX,
    RENDITION_PREFIX,
    StepObservation,
    aggregate,
    is_chunk_step,
    parse_result,
    spec_hash,
)
from videoflix_core.transcode import (
    ANNOTATION_PRIORITY,
    ANNOTATION_SUBMITTED,
    LABEL_RENDITION,
    LABEL_SPEC_HASH,
    LABEL_STEP,
    Phase,
    StepPhase,
    StepStatus,
    VideoTranscodeSpec,
    VideoTranscodeStatus,
)

from videoflix_operator.builders import ASSEMBLE_KIND, CHUNK_KIND, Owner, build_job, job_name
from videoflix_operator.config import OperatorSettings

Obj = Mapping[str, Any]


@dataclass(frozen=True)
class EventNote:
    """A Kubernetes Event to post on the CR."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass
class Actions:
    status: VideoTranscodeStatus
    create: list[dict[str, Any]] = field(default_factory=list)
    delete_jobs: list[str] = field(default_factory=list)
    # Queued Jobs whose priority annotation no longer matches the spec (a priority change).
    reprioritize: list[str] = field(default_factory=list)
    delete_prefixes: list[str] = field(default_factory=list)
    keep_keys: set[str] = field(default_factory=set)
    events: list[EventNote] = field(default_factory=list)


def step_key(job: Obj) -> str | None:
    """The status step a Job stands for, from its labels."""
    job_labels = job.get("metadata", {}).get("labels") or {}
    kind = job_labels.get(LABEL_STEP)
    rendition = job_labels.get(LABEL_RENDITION)
    if kind == "rendition":
        return RENDITION_PREFIX + rendition if rendition else None
    if kind == CHUNK_KIND:
        return CHUNKS_PREFIX + rendition if rendition else CHUNKS  # "": SinglePass, every rung
    if kind == ASSEMBLE_KIND:
        return ASSEMBLE_PREFIX + rendition if rendition else None
    return kind if kind in ("probe", "thumbnail", "ladder", AUDIO) else None


def _condition(job: Obj, kind: str) -> Obj | None:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind and cond.get("status") == "True":
            return cond  # type: ignore[no-any-return]
    return None


def is_finished(job: Obj) -> bool:
    return _condition(job, "Complete") is not None or _condition(job, "Failed") is not None


def deciding_pod_message(pods: Iterable[Obj], succeeded: bool) -> str | None:
    """The termination message of the pod that decided the Job: the succeeded one, or the last
    failed one (the newest attempt says the most current reason)."""
    wanted = "Succeeded" if succeeded else "Failed"
    best: tuple[str, str] | None = None
    for pod in pods:
        status = pod.get("status") or {}
        if status.get("phase") != wanted:
            continue
        for cs in status.get("containerStatuses") or []:
            terminated = (cs.get("state") or {}).get("terminated") or {}
            message = terminated.get("message")
            if message:
                finished = str(terminated.get("finishedAt") or "")
                if best is None or finished >= best[0]:
                    best = (finished, str(message))
    return best[1] if best else None


def observe_job(job: Obj, result: Mapping[str, Any] | None) -> StepObservation:
    status = job.get("status") or {}
    complete = _condition(job, "Complete")
    failed = _condition(job, "Failed")
    finished: Literal["Complete", "Failed"] | None = (
        "Complete" if complete else "Failed" if failed else None
    )
    decided = complete or failed
    return StepObservation(
        name=str(job.get("metadata", {}).get("name", "")),
        suspended=bool((job.get("spec") or {}).get("suspend")),
        active=int(status.get("active") or 0),
        succeeded=int(status.get("succeeded") or 0),
        failed=int(status.get("failed") or 0),
        finished=finished,
        reason=failed.get("reason") if failed else None,
        message=failed.get("message") if failed else None,
        started_at=status.get("startTime"),
        finished_at=status.get("completionTime") or (decided or {}).get("lastTransitionTime"),
        result=result,
        completed_indexes=status.get("completedIndexes"),
        failed_indexes=status.get("failedIndexes"),
    )


def progress_pods(pods: Iterable[Obj], spec_hash: str | None) -> list[tuple[str, str]]:
    """(pod name, step key) of the running pods of the current spec: whose logs to read for live
    progress (a superseded spec's pods are being deleted and say nothing about the new work)."""
    chosen: list[tuple[str, str]] = []
    for pod in pods:
        pod_labels = pod.get("metadata", {}).get("labels") or {}
        key = step_key(pod)
        if (pod.get("status") or {}).get("phase") != "Running" or key is None:
            continue
        if is_chunk_step(key):
            continue  # one index's percent says little: a chunked rung counts its indexes
        if spec_hash is not None and pod_labels.get(LABEL_SPEC_HASH) != spec_hash:
            continue
        chosen.append((str(pod["metadata"]["name"]), key))
    return chosen


def job_verdict(job: Obj) -> Literal["Complete", "Failed"] | None:
    """The Job controller's verdict on a Job (None while it runs)."""
    if _condition(job, "Complete") is not None:
        return "Complete"
    return "Failed" if _condition(job, "Failed") is not None else None


def owned_pods(job: Obj, pods: Iterable[Obj]) -> list[Obj]:
    """The pods among `pods` (one listing for all the Jobs of a transcode) that `job` created:
    matched by owner uid, so a re-created Job of the same name never reads its predecessor's."""
    uid = job["metadata"].get("uid")
    return [
        pod
        for pod in pods
        if any(
            ref.get("uid") == uid for ref in pod.get("metadata", {}).get("ownerReferences") or []
        )
    ]


def job_result(job: Obj, pods: Iterable[Obj]) -> dict[str, Any] | None:
    """Parse the result of a finished Job from its pods (None while it runs)."""
    if not is_finished(job):
        return None
    return parse_result(deciding_pod_message(pods, _condition(job, "Complete") is not None))


@dataclass(frozen=True)
class Observed:
    jobs: Sequence[Obj]
    results: Mapping[str, Mapping[str, Any] | None]
    previous: VideoTranscodeStatus | None
    generation: int | None = None
    # Stored results of steps that have no Job (its TTL removed it): step key → result.
    recovered: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # Finished Jobs whose result is lost (`videoflix_core.results` said re-run): deleted and
    # started again, never reported as failures.
    rerun: frozenset[str] = frozenset()


def plan(
    spec: VideoTranscodeSpec,
    owner: Owner,
    observed: Observed,
    settings: OperatorSettings,
    now: str,
) -> Actions:
    current = spec_hash(spec)
    steps: dict[str, StepObservation] = {}
    actions = Actions(status=VideoTranscodeStatus())
    for job in observed.jobs:
        name = str(job["metadata"]["name"])
        job_labels = job["metadata"].get("labels") or {}
        key = step_key(job)
        if job_labels.get(LABEL_SPEC_HASH) != current or key is None:
            actions.delete_jobs.append(name)  # superseded by a spec change
            continue
        if name in observed.rerun:
            actions.delete_jobs.append(name)
            continue
        steps[key] = observe_job(job, observed.results.get(name))
        if not is_finished(job) and _priority(job) != spec.priority:
            actions.reprioritize.append(name)
    for key, result in observed.recovered.items():
        if key not in steps:
            steps[key] = StepObservation(
                name=job_name(owner.name, current, key),
                succeeded=1,
                finished="Complete",
                result=result,
            )

    agg = aggregate(
        spec,
        steps,
        observed.previous,
        now=now,
        generation=observed.generation,
        ladder=settings.ladder_rungs(),
        chunk_seconds=settings.chunk_seconds,
    )
    actions.status = agg.status
    for step, rungs in agg.to_start.items():
        actions.create.append(
            build_job(
                owner=owner,
                spec=spec,
                spec_hash=current,
                step=step,
                rungs=rungs,
                settings=settings,
                chunks=agg.chunks,
                with_audio=agg.with_audio,
            )
        )

    previous = observed.previous
    if previous is not None and previous.spec_hash and previous.spec_hash != current:
        # New source or ladder: old outputs must not be served next to (or instead of) new ones.
        prefix = storage.video_prefix(spec.video_id)
        actions.delete_prefixes = [
            *(storage.rendition_prefix(spec.video_id, n) for n in (previous.renditions or {})),
            storage.thumbnails_prefix(spec.video_id),
            storage.results_prefix(spec.video_id),
            storage.chunks_prefix(spec.video_id),
            f"{prefix}source/",
        ]
        actions.keep_keys = {spec.source.key}
        actions.events.append(EventNote("Normal", "Superseded", "Spec changed: restarting"))
    elif (intermediates := intermediates_prefix(spec, agg, previous)) is not None:
        actions.delete_prefixes = [intermediates]
    # No Event per created Job or ready rendition: on the happy path only phase changes are
    # posted (a CR's Events are API writes, and 10,000 CRs made them most of the traffic).
    actions.events += transition_events(
        previous if previous is not None and previous.spec_hash == current else None, agg.status
    )
    return actions


def _steps(status: VideoTranscodeStatus) -> dict[str, StepStatus]:
    steps: dict[str, StepStatus] = dict(status.renditions or {})
    if status.probe is not None:
        steps["probe"] = status.probe
    if status.thumbnail is not None:
        steps["thumbnail"] = status.thumbnail
    return steps


def transition_events(
    before: VideoTranscodeStatus | None, after: VideoTranscodeStatus
) -> list[EventNote]:
    """One line per phase change, step failure and retry between two statuses (none when nothing
    changed), so `kubectl describe vt` tells the story without reading Jobs or logs."""
    notes: list[EventNote] = []
    old_steps = _steps(before) if before else {}
    for name, step in _steps(after).items():
        old = old_steps.get(name)
        if step.phase != StepPhase.FAILED and step.attempts > max(1, old.attempts if old else 0):
            notes.append(
                EventNote(
                    "Warning",
                    "StepRetried",
                    f"Step {name} failed transiently; attempt {step.attempts} started",
                )
            )
    thumb, old_thumb = after.thumbnail, old_steps.get("thumbnail")
    if (
        thumb
        and thumb.phase == StepPhase.FAILED
        and (old_thumb is None or old_thumb.phase != StepPhase.FAILED)
    ):
        # It does not fail the video, so no phase change would tell.
        notes.append(EventNote("Warning", "ThumbnailFailed", f"Thumbnail failed: {thumb.message}"))
    old_renditions = (before.renditions or {}) if before else {}
    for name, rendition in (after.renditions or {}).items():
        old = old_renditions.get(name)
        if old is not None and old.phase == rendition.phase:
            continue
        if rendition.phase == StepPhase.FAILED:
            notes.append(
                EventNote(
                    "Warning", "RenditionFailed", f"Rendition {name} failed: {rendition.message}"
                )
            )
    old_phase = before.phase if before else None
    if after.phase != old_phase:
        if after.phase == Phase.FAILED:
            notes.append(EventNote("Warning", "TranscodeFailed", after.message or "failed"))
        elif after.phase == Phase.SUCCEEDED:
            notes.append(
                EventNote("Normal", "TranscodeSucceeded", f"All {after.ready} renditions ready")
            )
        elif after.phase == Phase.PROBING:
            notes.append(EventNote("Normal", "Probing", "Probing the source"))
        elif after.phase == Phase.TRANSCODING and after.source is not None:
            src = after.source
            notes.append(
                EventNote(
                    "Normal",
                    "Probed",
                    f"Source is {src.width}x{src.height}, "
                    f"{src.duration_seconds:.1f}s; planned {after.ready}",
                )
            )
    return notes


def status_patch(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON merge patch turning `old` into `new`: keys gone from `new` are set to null, so
    renditions of a superseded plan do not linger in the status."""
    patch: dict[str, Any] = {}
    old = old or {}
    for key in old:
        if key not in new:
            patch[key] = None
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            sub = status_patch(before, value)
            if sub:
                patch[key] = sub
        elif value != before:
            patch[key] = value
    return patch


def _priority(job: Obj) -> int:
    raw = (job.get("metadata", {}).get("annotations") or {}).get(ANNOTATION_PRIORITY, "0")
    try:
        return int(raw)
    except ValueError:
        return 0


def job_pods(job: Obj) -> int:
    """The pods a Job runs at once: 1, or an Indexed Job's parallelism while that many of its
    indexes are left (the cap counts pods, so a chunked rung cannot take the whole cluster)."""
    spec = job.get("spec") or {}
    completions = spec.get("completions")
    if completions is None or spec.get("completionMode") != "Indexed":
        return 1  # every other Job of ours is one pod
    parallelism = int(spec.get("parallelism") or 1)
    done = len(parse_indexes((job.get("status") or {}).get("completedIndexes")))
    return max(1, min(parallelism, int(completions) - done))


def job_load(job: Obj) -> tuple[int, int]:
    """One Job's share of the cap: (pods running, Jobs queued) — (job_pods, 0) released and
    unfinished, (0, 1) suspended and unfinished, (0, 0) finished."""
    if is_finished(job):
        return 0, 0
    if (job.get("spec") or {}).get("suspend"):
        return 0, 1
    return job_pods(job), 0


def total_load(jobs: Iterable[Obj]) -> tuple[int, int]:
    """(pods of unsuspended unfinished Jobs, suspended unfinished Jobs): `job_load` summed (the
    Job cache keeps this sum as Jobs change, so a create never walks every Job)."""
    loads = [job_load(job) for job in jobs]
    return sum(r for r, _ in loads), sum(q for _, q in loads)


def _running_and_queued(jobs: Iterable[Obj]) -> tuple[int, list[Obj]]:
    """(pods of unsuspended unfinished Jobs, the suspended unfinished Jobs)."""
    running = 0
    queued: list[Obj] = []
    for job in jobs:
        pods, waiting = job_load(job)
        running += pods
        if waiting:
            queued.append(job)
    return running, queued


def select_releases(
    jobs: Iterable[Obj], cap: int, reserved: int = 0
) -> tuple[list[tuple[str, str]], int, int]:
    """Which suspended Jobs to release: (namespace, name) list, plus running and queued counts.

    Running = the pods of unsuspended, unfinished Jobs (`job_pods`), plus `reserved`: pods of
    Jobs created released (`admit_on_create`) whose answer is not in the cache yet. Released
    highest priority first, then oldest video (then oldest Job): a flood of uploads cannot
    starve an urgent one, nothing waits forever behind newer work, and each video finishes as
    early as it can instead of every video's probe running before anyone's renditions. A Job
    whose pods do not fit in the free slots waits, and so does everything behind it (a wide Job
    is never starved by a stream of narrow ones).
    """
    running, queued = _running_and_queued(jobs)
    running += reserved
    queued.sort(
        key=lambda j: (
            -_priority(j),
            # The video's age first: finish older uploads before starting newer ones.
            str((j["metadata"].get("annotations") or {}).get(ANNOTATION_SUBMITTED) or ""),
            str(j["metadata"].get("creationTimestamp") or ""),
            str(j["metadata"]["name"]),
        )
    )
    free = max(0, cap - running)
    chosen: list[tuple[str, str]] = []
    for job in queued:
        pods = min(job_pods(job), cap)  # wider than the cap (a lowered cap): it runs alone
        if pods > free:
            break
        free -= pods
        chosen.append((str(job["metadata"]["namespace"]), str(job["metadata"]["name"])))
    return chosen, running, len(queued)


def admit_on_create(
    new: Sequence[Obj], load: tuple[int, int], cap: int, reserved: int = 0
) -> list[str]:
    """Which of a reconcile's new Jobs are created released instead of suspended.

    Only while nothing is queued (queued Jobs go first, in `select_releases`' order) and only
    as many as fit next to the running pods and the `reserved` ones; the rest are created
    suspended for the scheduler, as before. Under a cap with room this saves a release PATCH per
    Job, the Job controller's write of the Suspended condition, and a scheduler round trip of
    latency; with a full cap nothing changes. `load` is the existing Jobs' `total_load`.
    """
    running, queued = load
    if queued:
        return []
    free = cap - running - reserved
    admitted: list[str] = []
    for manifest in new:
        pods = min(job_pods(manifest), cap)
        if pods > free:
            break
        free -= pods
        admitted.append(str(manifest["metadata"]["name"]))
    return admitted
