"""Pure builders of the objects the operator creates: Job names and Job manifests.

`build_job` returns a plain dict, so tests check every field without a cluster and the k8s module
only sends what was built here.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from videoflix_core import storage
from videoflix_core.chunk_steps import chunk_step_args
from videoflix_core.chunks import Chunk
from videoflix_core.ladder import Rung
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
from videoflix_core.status import spec_hash as hash_of_spec
from videoflix_core.transcode import (
    ANNOTATION_PRIORITY,
    ANNOTATION_SUBMITTED,
    API_VERSION,
    KIND,
    LABEL_RENDITION,
    LABEL_SPEC_HASH,
    LABEL_STEP,
    LABEL_TRANSCODE,
    LABEL_VIDEO_ID,
    VideoTranscodeSpec,
)

from videoflix_operator.config import OperatorSettings

MAX_NAME = 63
CONTAINER = "transcoder"
MANAGED_BY = "videoflix-operator"
SCRATCH_DIR = "/scratch"
BAD_INPUT_EXIT_CODE = 2
_LABEL_SAFE = re.compile(r"[^a-z0-9-]+")


CHUNK_KIND = "chunk"
ASSEMBLE_KIND = "assemble"


def step_kind(step: str) -> str:
    """probe | rendition | ladder | thumbnail | chunk | audio | assemble (the
    `videoflix.io/step` label)."""
    if step.startswith(RENDITION_PREFIX):
        return "rendition"
    if step == CHUNKS or step.startswith(CHUNKS_PREFIX):
        return CHUNK_KIND
    if step.startswith(ASSEMBLE_PREFIX):
        return ASSEMBLE_KIND
    return step


def step_rendition(step: str) -> str:
    """The rung a step is for ("" for probe, thumbnail, ladder, audio, SinglePass chunks)."""
    for prefix in (RENDITION_PREFIX, CHUNKS_PREFIX, ASSEMBLE_PREFIX):
        if step.startswith(prefix):
            return step[len(prefix) :]
    return ""


def step_suffix(step: str) -> str:
    if step.startswith(RENDITION_PREFIX):
        return step[len(RENDITION_PREFIX) :]
    if step.startswith(CHUNKS_PREFIX):
        return "chunks-" + step[len(CHUNKS_PREFIX) :]
    if step.startswith(ASSEMBLE_PREFIX):
        return "join-" + step[len(ASSEMBLE_PREFIX) :]
    return {PROBE: "probe", THUMBNAIL: "thumb", LADDER: "ladder", CHUNKS: "chunks", AUDIO: "audio"}[
        step
    ]


def job_name(cr_name: str, spec_hash: str, step: str) -> str:
    """Deterministic Job name `<cr>-<spec-hash>-<step>`, a DNS-1123 label of at most 63 chars.

    Deterministic so a restarted operator finds (409) instead of duplicating; the spec hash in it
    means a changed spec gets new Jobs. Over-long CR names are cut and made unique again with a
    hash of the full name.
    """
    suffix = f"-{spec_hash}-{step_suffix(step)}"
    base = _LABEL_SAFE.sub("-", cr_name.lower()).strip("-")
    if len(base) + len(suffix) > MAX_NAME:
        tag = hashlib.sha256(cr_name.encode()).hexdigest()[:6]
        base = base[: MAX_NAME - len(suffix) - len(tag) - 1].rstrip("-") + "-" + tag
    return base + suffix


def labels(cr_name: str, spec: VideoTranscodeSpec, spec_hash: str, step: str) -> dict[str, str]:
    rendition = step_rendition(step)
    return {
        "app.kubernetes.io/name": "videoflix-transcoder",
        "app.kubernetes.io/instance": cr_name[:MAX_NAME],
        "app.kubernetes.io/component": step_kind(step),
        "app.kubernetes.io/part-of": "videoflix",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        LABEL_TRANSCODE: cr_name[:MAX_NAME],
        LABEL_STEP: step_kind(step),
        LABEL_RENDITION: rendition,
        LABEL_SPEC_HASH: spec_hash,
        LABEL_VIDEO_ID: str(spec.video_id),
    }


@dataclass(frozen=True)
class Owner:
    """The VideoTranscode a Job belongs to."""

    name: str
    namespace: str
    uid: str
    created: str = ""  # creationTimestamp: queued Jobs of older videos go first


def transcoder_args(
    step: str,
    spec: VideoTranscodeSpec,
    rungs: Sequence[Rung],
    chunks: Sequence[Chunk] = (),
    with_audio: bool = True,
) -> list[str]:
    """The transcoder CLI for one step (see the transcoder's CLI contract)."""
    source = f"s3://{spec.source.bucket}/{spec.source.key}"
    dest = f"s3://{spec.source.bucket}/{storage.video_prefix(spec.video_id)}"
    current = hash_of_spec(spec)
    # The result also lands in storage, so it outlives the pod (videoflix_core.results).
    key = storage.step_result_key(spec.video_id, spec.transcode_generation, current, step)
    result = ["--result-to", f"s3://{spec.source.bucket}/{key}"]
    kind = step_kind(step)
    if kind in (CHUNK_KIND, AUDIO, ASSEMBLE_KIND):
        return chunk_step_args(
            step,
            rungs,
            chunks,
            source=source,
            dest=dest,
            work=storage.chunk_work(spec.transcode_generation, current),
            result_to=f"s3://{spec.source.bucket}/{key}",
            with_audio=with_audio,
        )
    if kind == PROBE:
        return ["probe", "--source", source, *result]
    if kind == THUMBNAIL:
        return ["thumbnail", "--source", source, "--dest", dest, *result]
    if kind == LADDER:
        args = ["ladder", "--source", source, "--dest", dest, *result]
        for rung in rungs:
            width, height = rung.planned_size  # the planner's exact size, never re-decided
            args += ["--rung", f"{rung.name}:{width}x{height}"]
        return args
    [rung] = rungs
    width, height = rung.planned_size
    return [
        "rendition",
        "--source",
        source,
        "--dest",
        dest,
        *result,
        "--name",
        rung.name,
        "--width",
        str(width),
        "--height",
        str(height),
        *rung.cli_args(),
    ]


def _deadline(settings: OperatorSettings, step: str) -> int:
    kind = step_kind(step)
    if kind == PROBE:
        return settings.probe_deadline_seconds
    if kind == THUMBNAIL:
        return settings.thumbnail_deadline_seconds
    return settings.rendition_deadline_seconds


def _resources_key(step: str) -> str:
    kind = step_kind(step)
    if kind == CHUNK_KIND:
        # A rung's chunk encodes like its rendition; SinglePass chunks like the ladder.
        return step_rendition(step) or LADDER
    return step[len(RENDITION_PREFIX) :] if kind == "rendition" else kind


def pod_failure_policy(on_bad_input: Literal["FailJob", "FailIndex"]) -> dict[str, Any]:
    """Bad input (not a video, corrupt: exit 2) ends the step, or an Indexed Job's index, at
    once, since retrying cannot help; evictions, preemption and node drains are not the video's
    fault and cost no retry."""
    return {
        "rules": [
            {
                "action": on_bad_input,
                "onExitCodes": {
                    "containerName": CONTAINER,
                    "operator": "In",
                    "values": [BAD_INPUT_EXIT_CODE],
                },
            },
            {
                "action": "Ignore",
                "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
            },
        ]
    }


def indexed_spec(completions: int, settings: OperatorSettings) -> dict[str, Any]:
    """The Indexed Job fields of a chunked step: each index retried alone within its own
    budget, a bad-input exit (2) fails its index at once, and one index out of retries fails
    the Job (maxFailedIndexes 0: the rung cannot be assembled, so the other indexes stop).
    `backoffLimit` stays unset: with `backoffLimitPerIndex` the API server defaults it to the
    maximum, and a Job-wide limit would let one flaky index use up the others' retries."""
    return {
        "completionMode": "Indexed",
        "completions": completions,
        # Never more than the cap: the scheduler releases a Job only when all its pods fit.
        "parallelism": max(
            1, min(settings.chunk_parallelism, settings.max_running_jobs, completions)
        ),
        "backoffLimitPerIndex": settings.backoff_limit,
        "maxFailedIndexes": 0,
        "podReplacementPolicy": "Failed",
        "podFailurePolicy": pod_failure_policy("FailIndex"),
    }


def build_job(
    *,
    owner: Owner,
    spec: VideoTranscodeSpec,
    spec_hash: str,
    step: str,
    rungs: Sequence[Rung],
    settings: OperatorSettings,
    chunks: Sequence[Chunk] = (),
    with_audio: bool = True,
) -> dict[str, Any]:
    """The Job for one step, built suspended: the reconciler creates it released only when
    `plan.admit_on_create` finds room under the cap, else the scheduler releases it.

    A chunk step is an Indexed Job with one index per chunk (`indexed_spec`)."""
    name = job_name(owner.name, spec_hash, step)
    job_labels = labels(owner.name, spec, spec_hash, step)
    container = {
        "name": CONTAINER,
        "image": settings.transcoder_image,
        "imagePullPolicy": settings.image_pull_policy,
        "args": transcoder_args(step, spec, rungs, chunks, with_audio),
        "env": [
            {"name": "VIDEOFLIX_SCRATCH_DIR", "value": SCRATCH_DIR},
            {
                "name": "VIDEOFLIX_CPU_LIMIT",
                "valueFrom": {
                    "resourceFieldRef": {
                        "containerName": CONTAINER,
                        "resource": "limits.cpu",
                        "divisor": "1",
                    }
                },
            },
        ],
        # The S3 endpoint and credentials: a Secret, never literal values in the Job.
        "envFrom": [{"secretRef": {"name": settings.s3_secret_name}}],
        "resources": settings.resources_for(_resources_key(step)),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        # The result JSON is the termination message; a crash still leaves its log tail there.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [
            {"name": "scratch", "mountPath": SCRATCH_DIR},
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - a private emptyDir, not host /tmp
        ],
    }
    job: dict[str, Any] = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": owner.namespace,
            "labels": job_labels,
            "annotations": {
                ANNOTATION_PRIORITY: str(spec.priority),
                ANNOTATION_SUBMITTED: owner.created,
            },
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": KIND,
                    "name": owner.name,
                    "uid": owner.uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "suspend": True,
            "backoffLimit": settings.backoff_limit,
            "activeDeadlineSeconds": _deadline(settings, step),
            "ttlSecondsAfterFinished": settings.job_ttl_seconds,
            "podFailurePolicy": pod_failure_policy("FailJob"),
            "template": {
                "metadata": {"labels": job_labels},
                "spec": {
                    "restartPolicy": "Never",
                    "serviceAccountName": settings.job_service_account,
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": settings.run_as_user,
                        "runAsGroup": settings.run_as_user,
                        "fsGroup": settings.run_as_user,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container],
                    "volumes": [
                        {"name": "scratch", "emptyDir": {"sizeLimit": settings.scratch_size_limit}},
                        {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
                    ],
                    # Pull secrets, nodeSelector, tolerations, affinity, priority class.
                    **settings.job_pod_scheduling(),
                },
            },
        },
    }
    if step_kind(step) == CHUNK_KIND:
        if len(chunks) < 2:
            raise ValueError(f"{step}: a chunked step needs a plan of two or more chunks")
        del job["spec"]["backoffLimit"]
        job["spec"].update(indexed_spec(len(chunks), settings))
    return job
