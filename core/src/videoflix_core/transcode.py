"""The `VideoTranscode` custom resource: spec and status models, names, and the manifest the API
creates.

The CRD under `crds/` is generated from these models (`python -m videoflix_core.crdgen`), so the
schema
the API server enforces and the fields the operator writes can never drift apart.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

GROUP = "videoflix.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "VideoTranscode"
PLURAL = "videotranscodes"
SINGULAR = "videotranscode"
SHORT_NAME = "vt"
CATEGORIES = ["videoflix", "all"]

# Labels and annotations the operator puts on what it creates (and selects them by).
LABEL_TRANSCODE = f"{GROUP}/transcode"
LABEL_RENDITION = f"{GROUP}/rendition"
LABEL_STEP = f"{GROUP}/step"
LABEL_SPEC_HASH = f"{GROUP}/spec-hash"
LABEL_VIDEO_ID = f"{GROUP}/video-id"
ANNOTATION_PRIORITY = f"{GROUP}/priority"
ANNOTATION_SUBMITTED = f"{GROUP}/submitted-at"

_RENDITION_NAME_PATTERN = r"^[1-9][0-9]{1,3}p$"


def cr_name(video_id: int) -> str:
    """The one CR name of a video: `video-<id>` (one transcode per video, replaced in place)."""
    if video_id < 1:
        raise ValueError(f"video ids are positive integers, got {video_id}")
    return f"video-{video_id}"


class _Model(BaseModel):
    """camelCase on the wire (Kubernetes convention), snake_case in Python."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    def wire(self) -> dict[str, Any]:
        """The camelCase dict as stored in the resource, without unset optional fields."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class _Observed(_Model):
    """Read back from the cluster: tolerate fields a newer operator version may have written."""

    model_config = ConfigDict(extra="ignore")


class Strategy(StrEnum):
    """How renditions are encoded: one Job each (parallel, retried alone) or one Job for all rungs
    (decodes the source once: cheaper on CPU for long sources, but one failure redoes
    everything)."""

    PER_RENDITION = "PerRendition"
    SINGLE_PASS = "SinglePass"  # noqa: S105 - a strategy name, not a password


class Phase(StrEnum):
    PENDING = "Pending"
    PROBING = "Probing"
    TRANSCODING = "Transcoding"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"

    @property
    def is_final(self) -> bool:
        return self in (Phase.SUCCEEDED, Phase.FAILED)


class StepPhase(StrEnum):
    """Phase of one unit of work (probe, one rendition, thumbnail)."""

    PENDING = "Pending"  # not created yet (or waiting for the probe)
    QUEUED = "Queued"  # Job exists but is suspended by the concurrency cap
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"

    @property
    def is_final(self) -> bool:
        return self in (StepPhase.SUCCEEDED, StepPhase.FAILED)


class SourceRef(_Model):
    """Where the uploaded original lives."""

    bucket: str = Field(min_length=3, max_length=63, pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    key: str = Field(min_length=1, max_length=1024)


class RenditionSpec(_Model):
    """One rung of the ladder; the rates (kbit/s) override the operator's defaults for that rung.

    `videoBitrate` switches the encoder from capped CRF to average bitrate; `maxrate`/`bufsize`
    cap the capped-CRF default. SinglePass encodes with the transcoder's own caps.
    """

    name: str = Field(
        pattern=_RENDITION_NAME_PATTERN,
        description="Quality name, e.g. 720p; also the output folder.",
    )
    height: int | None = Field(
        default=None,
        ge=16,
        le=4320,
        description="Output height; defaults to the number in the name.",
    )
    video_bitrate: int | None = Field(default=None, ge=16, le=100_000)
    maxrate: int | None = Field(default=None, ge=16, le=100_000)
    bufsize: int | None = Field(default=None, ge=16, le=100_000)
    audio_bitrate: int | None = Field(default=None, ge=16, le=100_000)

    @property
    def target_height(self) -> int:
        return self.height if self.height is not None else int(self.name[:-1])


class VideoTranscodeSpec(_Model):
    """What to transcode. Everything but `priority` defines the work: changing it supersedes old
    Jobs."""

    video_id: int = Field(
        ge=1,
        description="Id of the videos row this CR transcodes; immutable.",
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": "self == oldSelf", "message": "videoId is immutable"}
            ]
        },
    )
    transcode_generation: int = Field(
        default=0,
        ge=0,
        description="The videos row's transcode_generation; older outcomes are dropped.",
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": "self >= oldSelf", "message": "transcodeGeneration may only increase"}
            ]
        },
    )
    source: SourceRef
    renditions: list[RenditionSpec] | None = Field(
        default=None,
        min_length=1,
        max_length=8,
        description="Rungs to produce (never upscaled); the operator's ladder when absent.",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
        },
    )
    thumbnail: bool = Field(
        default=True, description="Also produce a poster and storyboard sprite."
    )
    strategy: Strategy = Field(default=Strategy.PER_RENDITION)
    priority: int = Field(
        default=0, ge=-100, le=100, description="Higher runs first when Jobs queue behind the cap."
    )

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": (
                        "self.source.key.startsWith('videos/')"
                        " && self.source.key.split('/').size() > 2"
                        " && self.source.key.split('/')[1] == string(self.videoId)"
                    ),
                    "message": "source.key must lie under the video's prefix videos/<videoId>/",
                }
            ]
        }
    )


class ProbeResult(_Observed):
    """What the probe Job found out about the source."""

    duration_seconds: float = Field(ge=0)
    width: int = Field(ge=0)
    height: int = Field(ge=0)
    rotation: int = 0
    fps: float | None = None
    max_fps: float | None = Field(
        default=None, description="The stream's r_frame_rate; equal to fps for constant rate."
    )
    video_codec: str | None = None
    audio_codec: str | None = None
    bitrate: int | None = None

    @property
    def display_size(self) -> tuple[int, int]:
        """(width, height) as shown to the viewer. The transcoder's probe already reports the
        displayed size (rotation and pixel aspect applied; `rotation` is informational), so
        swapping again here would turn a portrait phone video back to landscape."""
        return self.width, self.height


class RenditionOutput(_Observed):
    width: int
    height: int
    bitrate: int | None = None
    peak_bitrate: int | None = Field(
        default=None, ge=0, description="Bit/s of the largest segment (HLS BANDWIDTH)."
    )
    codecs: str | None = Field(
        default=None,
        max_length=256,
        description="RFC 6381 codecs, e.g. avc1.64001f,mp4a.40.2 (HLS CODECS).",
    )
    bytes: int | None = None
    duration_seconds: float | None = None
    encode_seconds: float | None = None
    file: str
    playlist: str | None = None


class ThumbnailOutput(_Observed):
    poster: str
    sprite: str | None = None
    vtt: str | None = None


class StepStatus(_Observed):
    phase: StepPhase = StepPhase.PENDING
    job: str | None = None
    attempts: int = 0
    started_at: str | None = Field(default=None, json_schema_extra={"format": "date-time"})
    finished_at: str | None = Field(default=None, json_schema_extra={"format": "date-time"})
    message: str | None = None


class ChunkProgress(_Observed):
    """A chunked rung's encode: its Indexed Job's indexes (`videoflix_core.chunks`)."""

    total: int = Field(ge=1, description="Chunks (indexes) of the rung.")
    seconds: int = Field(default=0, ge=0, description="The chunk length it was planned with.")
    done: int = Field(default=0, ge=0, description="Indexes finished (completedIndexes).")
    completed_indexes: str | None = Field(default=None, description="The Job's, e.g. 0-3,5.")
    failed_indexes: str | None = Field(default=None, description="Indexes out of retries.")


class RenditionStatus(StepStatus):
    height: int | None = None
    output: RenditionOutput | None = None
    chunks: ChunkProgress | None = Field(
        default=None, description="Set when the rung is encoded in chunks, then assembled."
    )


class ThumbnailStatus(StepStatus):
    output: ThumbnailOutput | None = None


class Condition(_Observed):
    """A Kubernetes-style condition (metav1.Condition)."""

    type: str
    status: str = Field(json_schema_extra={"enum": ["True", "False", "Unknown"]})
    reason: str
    message: str = ""
    last_transition_time: str = Field(json_schema_extra={"format": "date-time"})
    observed_generation: int | None = None


class VideoTranscodeStatus(_Observed):
    """Everything the operator writes; all declared so the API server never prunes it."""

    phase: Phase = Phase.PENDING
    progress: int = Field(default=0, ge=0, le=100)
    ready: str | None = Field(default=None, description="Renditions ready of planned, e.g. 2/4.")
    message: str | None = None
    observed_generation: int | None = None
    transcode_generation: int | None = None
    spec_hash: str | None = None
    source: ProbeResult | None = None
    probe: StepStatus | None = None
    renditions: dict[str, RenditionStatus] | None = None
    thumbnail: ThumbnailStatus | None = None
    audio: StepStatus | None = Field(
        default=None, description="The audio step of chunked rungs (encoded once)."
    )
    chunks: str | None = Field(
        default=None, description="Chunks encoded of all chunked rungs, e.g. 7/12."
    )
    # For `kubectl get vt -o wide` (what someone on call looks at first), from `on_call_summary`.
    current_step: str | None = Field(default=None, description="Steps running now, e.g. 360p,720p.")
    attempts: int | None = Field(default=None, description="Attempts over all steps, retries too.")
    running_since: str | None = Field(
        default=None,
        description="When the longest-running step started.",
        json_schema_extra={"format": "date-time"},
    )
    conditions: list[Condition] | None = Field(
        default=None,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )


class VideoTranscode(_Model):
    """The whole resource, for tests and tools that read CRs as typed objects."""

    api_version: str = API_VERSION
    kind: str = KIND
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: VideoTranscodeSpec
    status: VideoTranscodeStatus | None = None


def videotranscode_manifest(
    video_id: int,
    source_bucket: str,
    source_key: str,
    generation: int,
    namespace: str,
    renditions: list[RenditionSpec] | list[str] | None = None,
    strategy: Strategy | str = Strategy.PER_RENDITION,
    priority: int = 0,
    thumbnail: bool = True,
) -> dict[str, Any]:
    """The `VideoTranscode` object the API creates (or replaces) for one video.

    `generation` is the videos row's `transcode_generation`: bump it when the source is replaced so
    the
    operator supersedes the old work and never lets an old outcome overwrite the new one.
    `renditions` may be plain names ("720p") or full rungs; None means the operator's default
    ladder.
    Raises pydantic.ValidationError on bad input, the same rules the CRD enforces.
    """
    rungs: list[RenditionSpec] | None = None
    if renditions is not None:
        rungs = [r if isinstance(r, RenditionSpec) else RenditionSpec(name=r) for r in renditions]
    spec = VideoTranscodeSpec(
        video_id=video_id,
        transcode_generation=generation,
        source=SourceRef(bucket=source_bucket, key=source_key),
        renditions=rungs,
        thumbnail=thumbnail,
        strategy=Strategy(strategy),
        priority=priority,
    )
    if not spec.source.key.startswith(f"videos/{video_id}/"):
        raise ValueError(f"source key {source_key!r} must lie under videos/{video_id}/")
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": cr_name(video_id),
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/name": "videoflix",
                "app.kubernetes.io/component": "transcode",
                "app.kubernetes.io/managed-by": "videoflix-api",
                LABEL_VIDEO_ID: str(video_id),
            },
        },
        "spec": spec.wire(),
    }
