"""Fixtures of the operations tests: the pinned Helm and promtool (one-line skip when they cannot be
built outside CI), plus the operator platform fixtures reused from tests/operator."""

from __future__ import annotations

import os

import pytest

from tests.chart.helm import HelmUnavailable, helm_binary
from tests.operator.conftest import make_platform, sources  # noqa: F401 (fixtures)
from tests.ops.apisupport import api
from tests.ops.promql import ToolUnavailable, tool_binary

settings = api.settings  # the API's fixture: real PostgreSQL, MinIO and SMTP


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
