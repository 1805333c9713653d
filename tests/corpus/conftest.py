from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.corpus.sources import generate_all
from tests.fixtures.procs import missing_tool

# The operator harness (a real `kopf run`, control plane, MinIO, PostgreSQL), reused as is.
from tests.operator.conftest import make_platform

__all__ = ["corpus", "make_platform"]


@pytest.fixture(scope="session")
def corpus() -> dict[str, Path]:
    """Every corpus file by entry id (generated once, then served from the cache)."""
    if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:
        missing_tool("ffmpeg/ffprobe are not installed (apt-get install -y ffmpeg)")
    return generate_all()
