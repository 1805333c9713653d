"""Fixtures of the chart tests: the pinned Helm binary (one-line skip when it cannot be built)."""

from __future__ import annotations

import os

import pytest

from tests.chart.helm import HelmUnavailable, helm_binary


@pytest.fixture(scope="session", autouse=True)
def helm_available() -> str:
    try:
        return helm_binary()
    except HelmUnavailable as error:
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail(f"helm is required under CI: {error}", pytrace=False)
        pytest.skip(f"helm unavailable (tools/gotool.sh helm needs Go): {error}")
