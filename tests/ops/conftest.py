"""Fixtures of the operations tests: the pinned Helm and promtool (one-line skip when they cannot be
built outside CI), plus the operator platform fixtures reused from tests/operator."""

from __future__ import annotations

import base64
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import tests.operator.conftest as operator_fixtures
from tests.chart.helm import HelmUnavailable, helm_binary
from tests.cluster.podenv import ImageMapping
from tests.operator.conftest import Platform
from tests.ops.apisupport import api
from tests.ops.promql import ToolUnavailable, tool_binary

settings = api.settings  # the API's fixture: real PostgreSQL, MinIO and SMTP
# The operator's: a real `kopf run`, control plane, kubelet, MinIO and PostgreSQL.
make_platform = operator_fixtures.make_platform
sources = operator_fixtures.sources


def _unavailable(what: str, error: Exception) -> None:
    if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
        pytest.fail(f"{what} is required under CI: {error}", pytrace=False)
    pytest.skip(f"{what} unavailable (tools/gotool.sh needs Go): {error}")


@pytest.fixture(scope="session")
def helm_available() -> str:
    try:
        return helm_binary()
    except HelmUnavailable as error:
        _unavailable("helm", error)
        raise


@pytest.fixture(scope="session")
def promtool_available(helm_available: str) -> str:
    try:
        return tool_binary("promtool")
    except ToolUnavailable as error:
        _unavailable("promtool", error)
        raise


HANG_IMAGE = "videoflix-hang:test"


@pytest.fixture
def hanging_platform(make_platform: Callable[..., Platform]) -> tuple[Platform, Path]:
    """The operator platform with a transcoder image whose Jobs hang until the test writes the
    returned `release` file (tests/ops/hang_transcoder.py)."""
    p = make_platform(transcoder_image=HANG_IMAGE)
    if not any(m.match == "videoflix-hang" for m in p.kube.kubelet.images):
        entrypoint = (sys.executable, str(Path(__file__).with_name("hang_transcoder.py")))
        p.kube.kubelet.add_image(ImageMapping(match="videoflix-hang", entrypoint=entrypoint))
    # The pods' VIDEOFLIX_FLAKY_DIR, from the S3 Secret make_platform creates.
    secret: dict[str, Any] = p.kube.client.get(
        f"/api/v1/namespaces/{p.namespace}/secrets/videoflix-s3"
    )
    return p, Path(base64.b64decode(secret["data"]["VIDEOFLIX_FLAKY_DIR"]).decode()) / "release"
