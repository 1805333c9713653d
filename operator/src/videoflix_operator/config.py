"""Operator settings from the environment (`VIDEOFLIX_…`), loaded once and passed down."""

from __future__ import annotations

import copy
import re
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel
from pydantic_settings import BaseSettings, SettingsConfigDict
from videoflix_core.chunks import DEFAULT_CHUNK_SECONDS
from videoflix_core.ladder import DEFAULT_LADDER, Rung


class Resources(BaseModel):
    """Container requests/limits in Kubernetes quantities."""

    requests: dict[str, str] = Field(default_factory=dict)
    limits: dict[str, str] = Field(default_factory=dict)

    def manifest(self) -> dict[str, dict[str, str]]:
        return {k: v for k, v in (("requests", self.requests), ("limits", self.limits)) if v}


class LadderRung(BaseModel):
    name: str = Field(pattern=r"^[1-9][0-9]{1,3}p$")
    height: int = Field(ge=16, le=4320)
    video_bitrate: int | None = None
    maxrate: int | None = None
    bufsize: int | None = None
    audio_bitrate: int | None = None

    def rung(self) -> Rung:
        return Rung(**self.model_dump())


# DNS-1123 subdomain: names of Secrets and PriorityClasses.
_DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


class _PodField(BaseModel):
    """A piece of a pod spec given as JSON in Kubernetes' own (camelCase) shape.

    Unknown keys are refused, so a typo fails at operator start instead of in every Job.
    """

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    def manifest(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True)


class SecretReference(_PodField):
    """An entry of `imagePullSecrets`: `{"name": "regcred"}`."""

    name: str = Field(min_length=1, max_length=253, pattern=_DNS_SUBDOMAIN)


class Toleration(_PodField):
    """A pod toleration: `{"key": "dedicated", "value": "transcode", "effect": "NoSchedule"}`."""

    key: str | None = None
    operator: Literal["Exists", "Equal"] | None = None
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Toleration:
        # The API server's rules, checked up front so a bad setting stops the operator at start.
        if self.operator == "Exists" and self.value:
            raise ValueError("a toleration with operator Exists takes no value")
        if not self.key and self.operator != "Exists":
            raise ValueError("a toleration without a key needs operator Exists")
        if self.toleration_seconds is not None and self.effect != "NoExecute":
            raise ValueError("tolerationSeconds applies only to effect NoExecute")
        return self


def _default_resources() -> dict[str, Resources]:
    small = Resources(
        requests={"cpu": "250m", "memory": "256Mi"}, limits={"cpu": "1", "memory": "512Mi"}
    )
    return {
        "probe": small,
        "thumbnail": small,
        "120p": small,
        "360p": Resources(
            requests={"cpu": "500m", "memory": "384Mi"}, limits={"cpu": "1", "memory": "768Mi"}
        ),
        "720p": Resources(
            requests={"cpu": "1", "memory": "512Mi"}, limits={"cpu": "2", "memory": "1Gi"}
        ),
        "1080p": Resources(
            requests={"cpu": "1", "memory": "768Mi"}, limits={"cpu": "2", "memory": "2Gi"}
        ),
        "ladder": Resources(
            requests={"cpu": "1", "memory": "1Gi"}, limits={"cpu": "2", "memory": "3Gi"}
        ),
        # Chunked renditions: the audio encode and the I/O-only assembly are small.
        "audio": small,
        "assemble": small,
    }


class OperatorSettings(BaseSettings):
    """Everything the operator can be told. Complex values (dicts, lists) are JSON in the env."""

    model_config = SettingsConfigDict(env_prefix="VIDEOFLIX_", extra="ignore")

    namespace: str = "videoflix"
    # Transcode Jobs
    transcoder_image: str = "ghcr.io/videoflix/videoflix-transcoder:0.1.0"
    image_pull_policy: str = "IfNotPresent"
    job_service_account: str = "videoflix-transcoder"
    s3_secret_name: str = Field(
        default="videoflix-s3",
        description="Secret with VIDEOFLIX_S3_* keys, injected into Job pods with envFrom.",
    )
    resources: dict[str, Resources] = Field(default_factory=_default_resources)
    # Where Job pods may run (JSON in the env, Kubernetes' own shapes). Empty: the cluster's
    # defaults; the API server validates the rest when it admits each Job.
    job_image_pull_secrets: list[SecretReference] = Field(
        default_factory=list, description='Image pull secrets of Job pods: [{"name": "regcred"}].'
    )
    job_node_selector: dict[str, str] = Field(default_factory=dict)
    job_tolerations: list[Toleration] = Field(default_factory=list)
    job_affinity: dict[str, Any] = Field(
        default_factory=dict, description="A pod `affinity` object, passed through as given."
    )
    job_priority_class_name: str = Field(default="", max_length=253)
    ladder: list[LadderRung] | None = None
    max_running_jobs: int = Field(
        default=4, ge=1, description="Cap on the pods of unsuspended, unfinished Jobs."
    )
    job_ttl_seconds: int = Field(default=3600, ge=0)
    backoff_limit: int = Field(default=2, ge=0)
    probe_deadline_seconds: int = Field(default=300, ge=1)
    rendition_deadline_seconds: int = Field(default=3600, ge=1)
    thumbnail_deadline_seconds: int = Field(default=600, ge=1)
    # Chunked renditions (issue 14): a constant-rate source longer than one chunk is encoded
    # as an Indexed Job of chunks of this length (rounded to the 2 s keyframe grid), the audio
    # once, then assembled. 0 = off (every rung one pod). The default is the measured choice,
    # `videoflix_core.chunks.DEFAULT_CHUNK_SECONDS` (bench/chunked.py).
    chunk_seconds: float = Field(default=float(DEFAULT_CHUNK_SECONDS), ge=0)
    chunk_parallelism: int = Field(
        default=4, ge=1, description="Pods of one chunked Job at once (also capped by the cap)."
    )
    scratch_size_limit: str = "20Gi"
    run_as_user: int = 10001
    # Reconcile loop
    # Safety net only (Job events drive the work): every unfinished CR costs one reconcile per
    # period, so 1,000 queued CRs at 300 s are ~3 reconciles/s.
    resync_seconds: float = Field(default=300.0, gt=0)
    scheduler_interval_seconds: float = Field(default=10.0, gt=0)
    # How often running transcodes' pod logs are read for live progress.
    progress_seconds: float = Field(default=10.0, gt=0)
    io_threads: int = Field(default=32, ge=2, description="Threads for blocking client calls.")
    # CRs reconciled at once, whatever the backlog (`workqueue`): fewer than the I/O threads,
    # which the resync and progress passes and kopf use too.
    reconcile_workers: int = Field(default=16, ge=1, description="Reconciles running at once.")
    # Database and storage the operator itself uses (outcome writes, cleanup)
    database_url: str | None = None
    s3_endpoint_url: str | None = None
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
    s3_region: str = "us-east-1"
    s3_ambient_credentials: bool = Field(
        default=False,
        description="No keys: the SDK's default chain (env, IRSA web identity, instance role).",
    )
    cache_size: int = Field(
        default=2000, ge=10, description="CRs whose synced outcome the reconciler remembers."
    )
    # Observability
    metrics_port: int = Field(default=9090, ge=0, description="0 disables the metrics server.")
    liveness_port: int = 8080

    @field_validator("job_priority_class_name")
    @classmethod
    def _priority_class_name(cls, value: str) -> str:
        if value and not re.fullmatch(_DNS_SUBDOMAIN, value):
            raise ValueError(f"{value!r} is not a valid PriorityClass name")
        return value

    @field_validator("job_affinity")
    @classmethod
    def _affinity_kinds(cls, value: dict[str, Any]) -> dict[str, Any]:
        unknown = set(value) - {"nodeAffinity", "podAffinity", "podAntiAffinity"}
        if unknown:
            raise ValueError(f"unknown affinity keys {sorted(unknown)}")
        return value

    def job_pod_scheduling(self) -> dict[str, Any]:
        """The pod spec fields that place Job pods; only the ones that are set."""
        fields: dict[str, Any] = {
            "imagePullSecrets": [s.manifest() for s in self.job_image_pull_secrets],
            "nodeSelector": dict(self.job_node_selector),
            "tolerations": [t.manifest() for t in self.job_tolerations],
            "affinity": copy.deepcopy(self.job_affinity),
            "priorityClassName": self.job_priority_class_name,
        }
        return {k: v for k, v in fields.items() if v}

    def ladder_rungs(self) -> tuple[Rung, ...]:
        return tuple(r.rung() for r in self.ladder) if self.ladder else DEFAULT_LADDER

    def resources_for(self, key: str) -> dict[str, Any]:
        # A custom rung without its own entry gets the largest rung's: safe rather than unbounded.
        found = self.resources.get(key) or self.resources.get("1080p")
        return found.manifest() if found else {}


@lru_cache(maxsize=1)
def get_settings() -> OperatorSettings:
    return OperatorSettings()
