"""Pure builders of the objects the operator creates: Job names and Job manifests.

`build_job` returns a plain dict, so tests check every field without a cluster and the k8s module
only sends what was built here.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from videoflix_core import storage
from videoflix_core.ladder import Rung
from videoflix_core.status import LADDER, PROBE, RENDITION_PREFIX, THUMBNAIL
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


def step_kind(step: str) -> str:
    """probe | rendition | ladder | thumbnail (the `videoflix.io/step` label)."""
    return "rendition" if step.startswith(RENDITION_PREFIX) else step


def step_suffix(step: str) -> str:
    if step.startswith(RENDITION_PREFIX):
        return step[len(RENDITION_PREFIX) :]
    return {PROBE: "probe", THUMBNAIL: "thumb", LADDER: "ladder"}[step]


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
    rendition = step[len(RENDITION_PREFIX) :] if step.startswith(RENDITION_PREFIX) else ""
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


def transcoder_args(step: str, spec: VideoTranscodeSpec, rungs: Sequence[Rung]) -> list[str]:
    """The transcoder CLI for one step (see the transcoder's CLI contract)."""
    source = f"s3://{spec.source.bucket}/{spec.source.key}"
    dest = f"s3://{spec.source.bucket}/{storage.video_prefix(spec.video_id)}"
    # The result also lands in storage, so it outlives the pod (videoflix_core.results).
    key = storage.step_result_key(
        spec.video_id, spec.transcode_generation, hash_of_spec(spec), step
    )
    result = ["--result-to", f"s3://{spec.source.bucket}/{key}"]
    kind = step_kind(step)
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
    return step[len(RENDITION_PREFIX) :] if kind == "rendition" else kind


def build_job(
    *,
    owner: Owner,
    spec: VideoTranscodeSpec,
    spec_hash: str,
    step: str,
    rungs: Sequence[Rung],
    settings: OperatorSettings,
) -> dict[str, Any]:
    """The Job for one step, created suspended: the scheduler alone releases Jobs under the cap."""
    name = job_name(owner.name, spec_hash, step)
    job_labels = labels(owner.name, spec, spec_hash, step)
    container = {
        "name": CONTAINER,
        "image": settings.transcoder_image,
        "imagePullPolicy": settings.image_pull_policy,
        "args": transcoder_args(step, spec, rungs),
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
    return {
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
            "podFailurePolicy": {
                "rules": [
                    {
                        # Bad input (not a video, corrupt): retrying cannot help.
                        "action": "FailJob",
                        "onExitCodes": {
                            "containerName": CONTAINER,
                            "operator": "In",
                            "values": [BAD_INPUT_EXIT_CODE],
                        },
                    },
                    {
                        # Evictions, preemption, node drains are not the video's fault.
                        "action": "Ignore",
                        "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
                    },
                ]
            },
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
