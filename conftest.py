"""Shared test setup: real servers on loopback, started once per session by the fixtures below."""

import sys
from pathlib import Path

# `tests.fixtures…` and `tests.cluster…` are imported as packages of the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parent))

pytest_plugins = [
    "tests.fixtures.postgres",
    "tests.fixtures.minio",
    "tests.fixtures.smtp",
    "tests.cluster.fixtures",
]
