"""The CR models, the manifest the API creates, and the generated CRD."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError
from videoflix_core import crdgen
from videoflix_core.transcode import (
    RenditionSpec,
    Strategy,
    VideoTranscode,
    VideoTranscodeSpec,
    cr_name,
    videotranscode_manifest,
)

ROOT = Path(__file__).resolve().parents[2]


def test_manifest_has_the_shared_names_and_camel_case_spec() -> None:
    m = videotranscode_manifest(42, "media", "videos/42/source/a.mp4", 3, "videoflix")
    assert m["apiVersion"] == "videoflix.io/v1alpha1"
    assert m["kind"] == "VideoTranscode"
    assert m["metadata"]["name"] == "video-42"
    assert m["metadata"]["namespace"] == "videoflix"
    assert m["spec"] == {
        "videoId": 42,
        "transcodeGeneration": 3,
        "source": {"bucket": "media", "key": "videos/42/source/a.mp4"},
        "thumbnail": True,
        "strategy": "PerRendition",
        "priority": 0,
    }


def test_manifest_accepts_rendition_names_and_full_rungs() -> None:
    m = videotranscode_manifest(
        7,
        "media",
        "videos/7/source/x.mov",
        0,
        "ns",
        renditions=["360p", "720p"],
        strategy="SinglePass",
        priority=10,
    )
    assert m["spec"]["renditions"] == [{"name": "360p"}, {"name": "720p"}]
    assert m["spec"]["strategy"] == "SinglePass"
    rung = RenditionSpec(name="720p", video_bitrate=2000)
    m = videotranscode_manifest(7, "media", "videos/7/source/x.mov", 0, "ns", renditions=[rung])
    assert m["spec"]["renditions"] == [{"name": "720p", "videoBitrate": 2000}]
    assert VideoTranscode.model_validate(m).spec.renditions == [rung]


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"video_id": 0}, "video_id"),
        ({"source_key": "videos/8/source/a.mp4"}, "must lie under"),
        ({"source_bucket": "UPPER"}, "bucket"),
        ({"generation": -1}, "transcode_generation"),
        ({"priority": 101}, "priority"),
        ({"strategy": "Sideways"}, "Sideways"),
        ({"renditions": ["hd"]}, "name"),
    ],
)
def test_manifest_refuses_bad_input(kwargs: dict[str, object], fragment: str) -> None:
    args: dict[str, object] = {
        "video_id": 9,
        "source_bucket": "media",
        "source_key": "videos/9/source/a.mp4",
        "generation": 0,
        "namespace": "ns",
    }
    if kwargs.get("video_id") == 0:
        args["source_key"] = "videos/0/source/a.mp4"
    args.update(kwargs)
    with pytest.raises((ValidationError, ValueError)) as info:
        videotranscode_manifest(**args)  # type: ignore[arg-type]
    assert fragment in str(info.value)


def test_cr_name_is_video_id_based() -> None:
    assert cr_name(5) == "video-5"
    with pytest.raises(ValueError):
        cr_name(0)


def test_rendition_height_defaults_to_its_name() -> None:
    assert RenditionSpec(name="480p").target_height == 480
    assert RenditionSpec(name="480p", height=476).target_height == 476


def test_spec_defaults() -> None:
    spec = VideoTranscodeSpec.model_validate(
        {"videoId": 1, "source": {"bucket": "media", "key": "videos/1/source/a"}}
    )
    assert spec.strategy == Strategy.PER_RENDITION
    assert spec.thumbnail is True
    assert spec.renditions is None


def _walk(node: object, path: str = "") -> list[tuple[str, dict[str, object]]]:
    found: list[tuple[str, dict[str, object]]] = []
    if isinstance(node, dict):
        found.append((path, node))
        for key, value in node.items():
            found += _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _walk(value, f"{path}[{i}]")
    return found


def test_generated_crd_is_structural() -> None:
    schema = crdgen.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema):
        for banned in ("$ref", "$defs", "anyOf", "allOf", "oneOf", "title", "const"):
            assert banned not in node, f"{banned} at {path}"
        if "properties" in node:
            assert node.get("type") == "object", path
            assert "additionalProperties" not in node, path
    status = schema["properties"]["status"]["properties"]
    for field in ("phase", "progress", "ready", "conditions", "renditions", "observedGeneration"):
        assert field in status


def test_generated_crd_names_columns_and_subresources() -> None:
    doc = crdgen.crd()
    names = doc["spec"]["names"]
    assert doc["metadata"]["name"] == "videotranscodes.videoflix.io"
    assert names["shortNames"] == ["vt"]
    assert "videoflix" in names["categories"]
    version = doc["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"] if "priority" not in c]
    assert {"Phase", "Progress", "Ready", "Age"} <= set(columns)
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec["properties"]["strategy"]["enum"] == ["PerRendition", "SinglePass"]
    assert spec["properties"]["strategy"]["default"] == "PerRendition"
    assert spec["properties"]["renditions"]["x-kubernetes-list-type"] == "map"
    rules = [v["rule"] for v in spec["x-kubernetes-validations"]]
    assert any("startsWith" in r for r in rules)


def test_checked_in_crd_is_in_sync_and_says_it_is_generated() -> None:
    path = ROOT / "crds" / "videotranscodes.yaml"
    text = path.read_text()
    assert text.splitlines()[0].startswith("# GENERATED")
    assert text == crdgen.render(), "run: uv run python -m videoflix_core.crdgen"
    result = subprocess.run(
        [sys.executable, "-m", "videoflix_core.crdgen", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_samples_are_valid_resources() -> None:
    samples = sorted((ROOT / "crds" / "samples").glob("*.yaml"))
    assert samples
    for sample in samples:
        for doc in yaml.safe_load_all(sample.read_text()):
            VideoTranscode.model_validate(doc)


def test_check_mode_flags_a_stale_copy(tmp_path: Path) -> None:
    stale = tmp_path / "videotranscodes.yaml"
    stale.write_text(crdgen.render().replace("shortNames", "shortNamez"))
    assert crdgen.main(["--check", "--output", str(stale)]) == 1
    assert crdgen.main(["--output", str(stale)]) == 0
    assert crdgen.main(["--check", "--output", str(stale)]) == 0
