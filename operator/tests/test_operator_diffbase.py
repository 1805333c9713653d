"""The lean diff-base: the same essence as kopf's own, without copying what kopf drops."""

from __future__ import annotations

from typing import Any, cast

import kopf
from videoflix_operator.main import FINALIZER, PREFIX, LeanDiffBaseStorage

KEY = "last-handled-configuration"


def body(**status: Any) -> kopf.Body:
    raw = {
        "apiVersion": "videoflix.io/v1alpha1",
        "kind": "VideoTranscode",
        "metadata": {
            "name": "video-1",
            "namespace": "vf",
            "uid": "u1",
            "resourceVersion": "7",
            "generation": 2,
            "finalizers": [FINALIZER],
            "managedFields": [{"manager": "kopf", "fieldsV1": {"f:status": {}}}],
            "labels": {"app": "videoflix"},
            "annotations": {f"{PREFIX}/{KEY}": '{"spec": {}}', "team": "media"},
        },
        "spec": {"videoId": 1, "source": {"bucket": "media", "key": "videos/1/s/a.mp4"}},
        "status": status,
    }
    return kopf.Body(cast(kopf.RawBody, raw))


def test_lean_essence_equals_kopfs() -> None:
    lean = LeanDiffBaseStorage(prefix=PREFIX, key=KEY)
    full = kopf.AnnotationsDiffBaseStorage(prefix=PREFIX, key=KEY)
    for b in (body(), body(phase="Transcoding", renditions={"360p": {"phase": "Running"}})):
        assert lean.build(body=b) == full.build(body=b)
    essence = lean.build(body=body(phase="Succeeded"))
    # What a spec-change handler compares: spec and user metadata, never status or kopf's own.
    assert essence == {
        "spec": {"videoId": 1, "source": {"bucket": "media", "key": "videos/1/s/a.mp4"}},
        "metadata": {"labels": {"app": "videoflix"}, "annotations": {"team": "media"}},
    }
