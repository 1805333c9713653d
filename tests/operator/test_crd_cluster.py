"""The generated CRD as the real API server enforces it: defaults, validation, status, columns."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from videoflix_core.status import PROBE, THUMBNAIL, StepObservation, aggregate, rendition_step
from videoflix_core.transcode import VideoTranscodeSpec, videotranscode_manifest

from tests.cluster.client import KubeApiError
from tests.cluster.fixtures import Kube

pytestmark = pytest.mark.cluster
SAMPLES = Path(__file__).resolve().parents[2] / "crds" / "samples"


def base(ns: str, video_id: int = 5) -> dict[str, Any]:
    return videotranscode_manifest(video_id, "media", f"videos/{video_id}/source/a.mp4", 0, ns)


def path(ns: str, name: str = "") -> str:
    p = f"/apis/videoflix.io/v1alpha1/namespaces/{ns}/videotranscodes"
    return f"{p}/{name}" if name else p


def test_samples_are_accepted_and_defaults_filled(kube: Kube, kube_namespace: str) -> None:
    for sample in sorted(SAMPLES.glob("*.yaml")):
        doc = yaml.safe_load(sample.read_text())
        created = kube.client.create(path(kube_namespace), doc)
        assert created["spec"]["videoId"] == doc["spec"]["videoId"]
    minimal = kube.client.get(path(kube_namespace, "video-1"))["spec"]
    assert minimal["strategy"] == "PerRendition"
    assert minimal["thumbnail"] is True
    assert minimal["priority"] == 0


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda m: m["spec"]["source"].update(key="videos/6/source/a.mp4"), "videos/<videoId>/"),
        (lambda m: m["spec"]["source"].update(key="other/a.mp4"), "videos/<videoId>/"),
        (lambda m: m["spec"].update(strategy="Sideways"), "strategy"),
        (lambda m: m["spec"].update(priority=101), "priority"),
        (lambda m: m["spec"].update(videoId=0), "videoId"),
        (lambda m: m["spec"].update(renditions=[{"name": "720p"}, {"name": "720p"}]), "Duplicate"),
        (lambda m: m["spec"].update(renditions=[{"name": "hd"}]), "name"),
        (lambda m: m["spec"].pop("source"), "source"),
    ],
)
def test_bad_specs_are_refused(kube: Kube, kube_namespace: str, change: Any, fragment: str) -> None:
    manifest = base(kube_namespace)
    change(manifest)
    with pytest.raises(KubeApiError) as info:
        kube.client.create(path(kube_namespace), manifest)
    assert info.value.status == 422
    assert fragment in str(info.value)


def test_video_id_is_immutable_and_generation_only_grows(kube: Kube, kube_namespace: str) -> None:
    manifest = base(kube_namespace)
    manifest["spec"]["transcodeGeneration"] = 2
    kube.client.create(path(kube_namespace), manifest)
    with pytest.raises(KubeApiError, match="videoId is immutable"):
        kube.client.patch(
            path(kube_namespace, "video-5"),
            {"spec": {"videoId": 7, "source": {"bucket": "media", "key": "videos/7/source/a.mp4"}}},
        )
    with pytest.raises(KubeApiError, match="may only increase"):
        kube.client.patch(path(kube_namespace, "video-5"), {"spec": {"transcodeGeneration": 1}})
    kube.client.patch(path(kube_namespace, "video-5"), {"spec": {"transcodeGeneration": 3}})


def test_every_status_field_the_operator_writes_survives_pruning(
    kube: Kube, kube_namespace: str
) -> None:
    manifest = base(kube_namespace)
    kube.client.create(path(kube_namespace), manifest)
    spec = VideoTranscodeSpec.model_validate(manifest["spec"])
    probe = {
        "durationSeconds": 2.0,
        "width": 1920,
        "height": 1080,
        "rotation": 0,
        "fps": 25.0,
        "videoCodec": "h264",
        "audioCodec": None,
        "bitrate": 1,
    }

    def done(result: dict[str, Any]) -> StepObservation:
        return StepObservation(
            name="j",
            succeeded=1,
            finished="Complete",
            result=result,
            started_at="2026-01-01T00:00:00Z",
            finished_at="2026-01-01T00:00:01Z",
        )

    steps = {PROBE: done(probe), THUMBNAIL: done({"poster": "p", "sprite": "s", "vtt": "v"})}
    steps[rendition_step("120p")] = done(
        {
            "renditions": [
                {
                    "name": "120p",
                    "width": 214,
                    "height": 120,
                    "bitrate": 1,
                    "bytes": 2,
                    "durationSeconds": 2.0,
                    "encodeSeconds": 0.5,
                    "file": "f",
                    "playlist": "p",
                }
            ]
        }
    )
    steps[rendition_step("360p")] = StepObservation(name="k", failed=1, active=1)
    steps[rendition_step("720p")] = StepObservation(name="k", suspended=True)
    status = aggregate(spec, steps, None, now="2026-01-01T00:00:02Z", generation=1).status.wire()
    written = kube.client.patch(
        path(kube_namespace, "video-5") + "/status", {"status": copy.deepcopy(status)}
    )
    assert written["status"] == status  # nothing pruned, nothing refused
    # The main resource ignores status writes: only the status subresource changes it.
    kube.client.patch(path(kube_namespace, "video-5"), {"status": {"phase": "Failed"}})
    assert kube.client.get(path(kube_namespace, "video-5"))["status"]["phase"] == "Transcoding"


def test_printer_columns(kube: Kube, kube_namespace: str) -> None:
    kube.client.create(path(kube_namespace), base(kube_namespace))
    response = kube.client._http.get(
        path(kube_namespace),
        headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"},
    )
    response.raise_for_status()
    columns = [c["name"] for c in response.json()["columnDefinitions"]]
    assert columns[:1] == ["Name"]
    assert {"Phase", "Progress", "Ready", "Age"} <= set(columns)
    crd = kube.client.get(
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/videotranscodes.videoflix.io"
    )
    assert crd["spec"]["names"]["shortNames"] == ["vt"]
