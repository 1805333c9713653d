"""What decides a rebuild, and that skaffold, the chart and the local builds name the same images.

No podman needed: these check the inputs and the names, the image tests check the images.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from tests.images import build

REPO = Path(__file__).resolve().parents[2]


def test_copy_sources_are_the_context_paths_not_other_stages() -> None:
    dockerfile = (
        "FROM ${UV_IMAGE} AS uv\nFROM base AS build\nCOPY --from=uv /uv /bin/uv\n"
        "COPY pyproject.toml uv.lock ./\nCOPY --chown=1:1 core/src \\\n  core/src\n"
    )
    assert build.copy_sources(dockerfile) == ["pyproject.toml", "uv.lock", "core/src"]


def copy_transcoder(tmp_path: Path) -> build.AppImage:
    context = tmp_path / "transcoder-image"
    shutil.copytree(
        REPO / "transcoder-image", context, ignore=shutil.ignore_patterns("__pycache__", "tests")
    )
    return build.AppImage(
        "videoflix-transcoder", context / "Dockerfile", context, {"DEBIAN_IMAGE": build.DEBIAN_BASE}
    )


def test_the_tag_changes_with_each_input_and_only_with_them(tmp_path: Path) -> None:
    image = copy_transcoder(tmp_path)
    first = image.ref()
    # Not sent by COPY: no rebuild.
    (image.context / "tests").mkdir()
    (image.context / "tests" / "test_new.py").write_text("x = 1\n")
    cache = image.context / "src" / "videoflix_transcoder" / "__pycache__"
    cache.mkdir(exist_ok=True)
    (cache / "x.cpython-311.pyc").write_bytes(b"\0")
    assert image.ref() == first
    # A source file, the Dockerfile, a base: each rebuilds.
    module = next((image.context / "src").rglob("*.py"))
    module.write_text(module.read_text() + "\n# changed\n")
    second = image.ref()
    assert second != first
    image.dockerfile.write_text(image.dockerfile.read_text() + "\nLABEL x=y\n")
    third = image.ref()
    assert third != second
    other_base = build.BaseImage("videoflix-base-debian", ("ca-certificates", "passwd", "curl"))
    bases: dict[str, build.BaseImage | build.UvImage] = {"DEBIAN_IMAGE": other_base}
    moved = build.AppImage(image.name, image.dockerfile, image.context, bases)
    assert moved.ref() != third
    assert other_base.ref() != build.DEBIAN_BASE.ref()


def test_a_missing_copy_source_is_an_error(tmp_path: Path) -> None:
    image = copy_transcoder(tmp_path)
    shutil.rmtree(image.context / "src")
    with pytest.raises(FileNotFoundError, match="'src'"):
        image.ref()


@pytest.mark.parametrize("name", list(build.images()))
def test_each_dockerfile_keeps_public_bases_as_defaults_and_takes_local_ones(name: str) -> None:
    image = build.images()[name]
    text = image.dockerfile.read_text()
    for arg in image.bases:
        [default] = [
            line.split("=", 1)[1] for line in text.splitlines() if line.startswith(f"ARG {arg}=")
        ]
        assert not default.startswith("localhost/"), default
        assert "${" + arg + "}" in text
    # Nothing is copied from an image by name: that would pull it.
    assert not [line for line in text.splitlines() if "--from=" in line and "/" in line.split()[1]]


def test_skaffold_and_the_chart_name_the_images_the_local_build_makes() -> None:
    specs = {image.name: image for image in build.images().values()}
    config = yaml.safe_load((REPO / "skaffold.yaml").read_text())
    default = {a["image"]: a for a in config["build"]["artifacts"]}
    [local] = [p for p in config["profiles"] if p["name"] == "local-images"]
    podman = {a["image"]: a for a in local["build"]["artifacts"]}
    assert set(default) == set(podman) == set(specs)
    for name, image in specs.items():
        assert REPO / default[name]["context"] == image.context
        assert image.context / default[name]["docker"]["dockerfile"] == image.dockerfile
        assert REPO / podman[name]["context"] == image.context
        custom = podman[name]["custom"]
        short = name.removeprefix("videoflix-")
        assert custom["buildCommand"].split()[:2][-1] == short
        assert image.context / custom["dependencies"]["dockerfile"]["path"] == image.dockerfile
    values = yaml.safe_load((REPO / "charts" / "videoflix" / "values.yaml").read_text())
    for component in ("api", "operator", "transcoder"):
        repository = values[component]["image"]["repository"]
        assert repository.rsplit("/", 1)[-1] == f"videoflix-{component}"
        assert build.images()[component].latest() == f"localhost/videoflix-{component}:local"
