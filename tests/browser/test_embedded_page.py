"""A person's path through the embedded web page, in a real browser against the real server:
sign in, upload, watch the progress reach ready, play (HLS), switch quality, seek, favorite."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.embedded.server import EmbeddedServer, make_video
from tests.fixtures.procs import missing_tool

pytestmark = pytest.mark.browser


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedServer]:
    if shutil.which("ffmpeg") is None:
        missing_tool("ffmpeg is not installed (apt-get install -y ffmpeg)")
    running = EmbeddedServer(tmp_path / "data").start()
    try:
        yield running
    finally:
        running.stop()


def _current_time(page: Any) -> float:
    return float(page.evaluate("() => document.getElementById('player').currentTime"))


def _wait_playing_past(page: Any, seconds: float, timeout_ms: int = 60_000) -> None:
    page.wait_for_function(
        "(t) => { const v = document.getElementById('player');"
        " return !v.paused && v.currentTime > t && v.readyState >= 3; }",
        arg=seconds,
        timeout=timeout_ms,
    )


def test_sign_in_upload_play_switch_seek(
    browser: Any, server: EmbeddedServer, tmp_path: Path, output_dir: Path
) -> None:
    video_file = make_video(tmp_path / "ten-seconds.mp4", seconds=10, width=640, height=360)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    # Generous: the machine may be busy encoding for others; every wait still ends by itself.
    context.set_default_timeout(60_000)
    page = context.new_page()
    problems: list[str] = []
    # Signed out, the page asks /users/me/ and /users/refresh/ and gets 401s: expected, not errors.
    page.on(
        "console",
        lambda m: (
            problems.append(m.text) if m.type == "error" and "status of 401" not in m.text else None
        ),
    )
    page.on("pageerror", lambda e: problems.append(str(e)))

    page.goto(server.url + "/")
    page.wait_for_selector("#auth-view:not([hidden])")

    # Sign in with the dev admin account the server printed once.
    page.fill("#login-form input[name=email]", server.admin_email or "")
    page.fill("#login-form input[name=password]", server.admin_password or "")
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#grid-view:not([hidden])")
    assert page.is_visible("#open-upload"), "staff sees the upload button"
    assert page.text_content("#user-email") == server.admin_email

    # Upload a generated 10 s video; the bar reports the upload's progress.
    page.click("#open-upload")
    page.fill("#upload-form input[name=title]", "Ten seconds")
    page.fill("#upload-form input[name=category]", "Tests")
    page.set_input_files("#upload-form input[name=file]", str(video_file))
    page.click("#upload-form button[type=submit]")
    page.wait_for_selector("#flash:has-text('Upload complete')", timeout=60_000)
    assert page.eval_on_selector("#upload-progress", "e => e.value") == 100
    page.click("#close-upload")

    # The card shows the video as unfinished with a spinner, then reaches ready by polling.
    card = "li.video:has(.title:text-is('Ten seconds'))"
    page.wait_for_selector(card)
    seen: list[str] = []
    percents: list[int] = []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        state = page.get_attribute(card, "data-state") or ""
        if state == "ready":
            break
        assert state != "error", page.text_content(f"{card} .error-text")
        text = page.text_content(f"{card} .status-text") or ""
        seen.append(f"{state}:{text}")
        match = re.search(r"(\d+)%", text)
        if match:
            percent = int(match.group(1))
            if 0 < percent < 100 and not any(0 < p < 100 for p in percents):
                page.screenshot(path=str(output_dir / "processing.png"))
            percents.append(percent)
        time.sleep(0.2)
    else:
        pytest.fail(f"the video did not become ready; states seen: {seen[-5:]}")
    assert any(s.startswith(("pending", "processing")) for s in seen), seen
    # Live progress: a share strictly between 0 and 100 was shown, and it never went backwards.
    assert any(0 < p < 100 for p in percents), f"no live progress shown: {seen}"
    assert percents == sorted(percents), percents
    # The poster loads (through the API's redirect to a signed media URL).
    video_id = page.get_attribute(card, "data-video-id")
    page.wait_for_function(
        "(id) => document.querySelector(`li.video[data-video-id='${id}'] img`).naturalWidth > 0",
        arg=video_id,
        timeout=60_000,
    )
    assert page.is_hidden(f"{card} .status-overlay")

    # Play: automatic quality through hls.js (MSE, so the source is a blob: URL).
    page.click(f"{card} .thumb")
    page.wait_for_selector("#player-view:not([hidden])")
    assert page.input_value("#quality") == "auto"
    options = page.eval_on_selector_all("#quality option", "os => os.map(o => o.value)")
    assert options == ["auto", "360p", "120p"], options
    _wait_playing_past(page, 1.0)
    assert page.evaluate("() => document.getElementById('player').currentSrc").startswith("blob:")
    assert "auto:" in (page.text_content("#quality-info") or "")
    # hls.js sees every quality of the master playlist and may switch between them on its own.
    heights = page.evaluate("() => state.hls.levels.map(l => l.height).sort((a, b) => a - b)")
    assert heights == [120, 360]

    # Switch to one progressive quality: the position is kept and playback goes on.
    before = _current_time(page)
    page.select_option("#quality", "120p")
    page.wait_for_function(
        "() => document.getElementById('player').currentSrc.includes('/120p/video.mp4')"
    )
    _wait_playing_past(page, before + 0.5)
    assert page.evaluate("() => document.getElementById('player').videoHeight") == 120

    # Seek forward (served by a range request) and keep playing from there.
    page.evaluate("() => { document.getElementById('player').currentTime = 7; }")
    _wait_playing_past(page, 7.2)
    assert _current_time(page) < 10.5

    # And the other quality from the seeked position.
    before = _current_time(page)
    page.select_option("#quality", "360p")
    page.wait_for_function(
        "() => document.getElementById('player').currentSrc.includes('/360p/video.mp4')"
    )
    # It goes on playing in the new quality from where it was (a frame is painted, time moves).
    page.wait_for_function(
        "(t) => { const v = document.getElementById('player');"
        " return v.videoHeight === 360 && v.currentTime > t + 0.3; }",
        arg=before,
        timeout=60_000,
    )
    page.screenshot(path=str(output_dir / "player.png"), full_page=True)

    # Favorite survives a reload (stored by the API, not the page).
    page.click("#close-player")
    page.click(f"{card} .fav")
    page.wait_for_selector(f"{card} .fav[aria-pressed=true]")
    page.reload()
    page.wait_for_selector(f"{card} .fav[aria-pressed=true]")
    page.check("#only-favorites")
    assert page.locator("li.video").count() == 1
    page.screenshot(path=str(output_dir / "grid.png"), full_page=True)

    # Sign out returns to the sign-in form; the grid is no longer reachable.
    page.click("#logout")
    page.wait_for_selector("#auth-view:not([hidden])")
    context.close()
    assert problems == [], problems


def _link_from_log(server: EmbeddedServer, path: str, timeout: float = 10) -> str:
    """The newest link to `path` in a mail the embedded server logged instead of sending."""
    pattern = re.compile(re.escape(server.url) + re.escape(path) + r"\?\S+")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        links = pattern.findall(server.log())
        if links:
            return str(links[-1])
        time.sleep(0.1)
    raise AssertionError(f"no mail with a {path} link in the server log")


def test_register_confirm_forgot_and_reset(browser: Any, server: EmbeddedServer) -> None:
    email, first, second = "viewer@example.com", "first-Passw0rd", "second-Passw0rd"
    context = browser.new_context()
    context.set_default_timeout(60_000)
    page = context.new_page()
    page.goto(server.url + "/")
    page.click("#tab-register")
    page.fill("#register-form input[name=email]", email)
    page.fill("#register-form input[name=password]", first)
    page.fill("#register-form input[name=confirm_password]", first)
    page.click("#register-form button[type=submit]")
    page.wait_for_selector("#flash:has-text('Confirm your e-mail address')")

    # Not confirmed yet: signing in is refused with the API's message.
    page.fill("#login-form input[name=email]", email)
    page.fill("#login-form input[name=password]", first)
    page.click("#login-form button[type=submit]")
    page.wait_for_function("() => document.querySelector('[data-for=login]').textContent !== ''")
    assert page.is_visible("#auth-view")

    # The confirmation link (from the mail) lands on the page's /login with a message.
    page.goto(_link_from_log(server, "/users/confirm/"))
    page.wait_for_selector("#flash:has-text('E-mail address confirmed')")
    assert page.evaluate("() => window.location.pathname") == "/"
    page.fill("#login-form input[name=email]", email)
    page.fill("#login-form input[name=password]", first)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#grid-view:not([hidden])")
    assert page.is_hidden("#open-upload"), "a viewer gets no upload button"
    page.click("#logout")
    page.wait_for_selector("#auth-view:not([hidden])")

    # Forgot password → mail → /reset-password on the page → the new password works.
    page.click("#show-forgot")
    page.fill("#forgot-form input[name=email]", email)
    page.click("#forgot-form button[type=submit]")
    page.wait_for_selector("#flash:has-text('link to reset the password')")
    reset_link = _link_from_log(server, "/reset-password")
    page.goto(reset_link)
    page.wait_for_selector("#reset-form:not([hidden])")
    assert "token" not in page.evaluate("() => window.location.href")  # not kept in the URL
    page.fill("#reset-form input[name=new_password]", second)
    page.click("#reset-form button[type=submit]")
    page.wait_for_selector("#flash:has-text('Password changed')")
    page.fill("#login-form input[name=email]", email)
    page.fill("#login-form input[name=password]", second)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#grid-view:not([hidden])")
    assert page.text_content("#user-email") == email

    # The reset link was single-use.
    page.goto(reset_link)
    page.fill("#reset-form input[name=new_password]", "third-Passw0rd")
    page.click("#reset-form button[type=submit]")
    page.wait_for_function("() => document.querySelector('[data-for=reset]').textContent !== ''")
    context.close()
