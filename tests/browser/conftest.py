"""Debian's Chromium, headless, driven by Playwright (never `playwright install`: no downloads)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.procs import missing_tool

CHROMIUM = os.environ.get("VIDEOFLIX_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # The player starts after an API round trip, which may outlive the click's user activation.
    "--autoplay-policy=no-user-gesture-required",
]
REPO = Path(__file__).resolve().parents[2]


# Module scope, not session: Playwright's sync API keeps an event loop running in this thread while
# the browser is open, which would break later tests that call asyncio.run().
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).is_file():
        missing_tool(f"Chromium not found at {CHROMIUM} (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing_tool("playwright is not installed (uv sync)")
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture
def output_dir(request: pytest.FixtureRequest) -> Path:
    """Where a browser test leaves screenshots: test-output/browser/<test name>/ (CI keeps it)."""
    base = Path(os.environ.get("VIDEOFLIX_TEST_OUTPUT", REPO / "test-output"))
    path = base / "browser" / request.node.name
    path.mkdir(parents=True, exist_ok=True)
    return path
