"""The API and operator Dockerfiles' shape, and the chart's commands against the images' own CMD.

The images themselves are built and run in tests/images (podman); these checks read the files.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from tests.chart.helm import CHART, REPO, find, pod_spec, render

IMAGES = ("api/Dockerfile", "operator/Dockerfile")


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


@pytest.mark.parametrize("dockerfile", list(IMAGES), ids=lambda d: d.split("/")[0])
def test_dockerfile_is_multistage_non_root_and_exec_form(dockerfile: str) -> None:
    steps = instructions(REPO / dockerfile)
    froms = [args for word, args in steps if word == "FROM"]
    # uv's stage (COPY --from cannot expand a build argument), the build stage, the runtime.
    assert len(froms) == 3 and froms[0].endswith("AS uv") and froms[1].endswith("AS build")
    args = {a.split("=", 1)[0]: a.split("=", 1)[1] for w, a in steps if w == "ARG" and "=" in a}
    assert "slim" in args["PYTHON_IMAGE"]
    assert [a for w, a in steps if w == "USER"] == ["10001:10001"]
    [cmd] = [a for w, a in steps if w == "CMD"]
    assert isinstance(json.loads(cmd), list), "CMD must be exec form so PID 1 gets SIGTERM"
    env = " ".join(a for w, a in steps if w == "ENV")
    # Read-only root filesystem: nothing may want to write bytecode at run time.
    assert "PYTHONDONTWRITEBYTECODE=1" in env and "UV_COMPILE_BYTECODE=1" in env


def test_chart_commands_match_the_images() -> None:
    objects = render([CHART / "ci" / "default-values.yaml"])
    api_cmd = json.loads(dict(instructions(REPO / "api/Dockerfile"))["CMD"])
    [api] = pod_spec(find(objects, "Deployment", "-api"))["containers"]
    assert api["command"][:3] == api_cmd[:3]
    op_cmd = json.loads(dict(instructions(REPO / "operator/Dockerfile"))["CMD"])
    [op] = pod_spec(find(objects, "Deployment", "-operator"))["containers"]
    assert op["command"][:3] == op_cmd[:3] and op["command"][-2:] == op_cmd[-2:]


def test_skaffold_builds_three_images_into_one_release() -> None:
    config = yaml.safe_load((REPO / "skaffold.yaml").read_text())
    artifacts = {a["image"]: a for a in config["build"]["artifacts"]}
    assert set(artifacts) == {"videoflix-api", "videoflix-operator", "videoflix-transcoder"}
    for artifact in artifacts.values():
        assert (REPO / artifact["context"] / artifact["docker"]["dockerfile"]).is_file()
    [release] = config["deploy"]["helm"]["releases"]
    assert (REPO / release["chartPath"] / "Chart.yaml").is_file()
    templates = release["setValueTemplates"]
    # The transcoder image reaches the cluster only through the operator's settings.
    assert templates["transcoder.image.repository"] == "{{.IMAGE_REPO_videoflix_transcoder}}"
    # Each value is one the chart has (the schema refuses unknown keys), and the dev profile's
    # values render with the e2e dependencies' values file.
    [dev] = [p for p in config["profiles"] if p["name"] == "dev"]
    patches = {p["path"].rsplit("/", 1)[-1]: p["value"] for p in dev["patches"]}
    values = {k: "x" for k in templates} | patches["setValues"]
    objects = render([REPO / f for f in patches["valuesFiles"]], values)
    [transcoder_image] = [
        e["value"]
        for e in pod_spec(find(objects, "Deployment", "-operator"))["containers"][0]["env"]
        if e["name"] == "VIDEOFLIX_TRANSCODER_IMAGE"
    ]
    assert transcoder_image == "x:x"
    assert find(objects, "Deployment", "-api")["spec"]["replicas"] == 1
