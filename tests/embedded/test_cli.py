"""`python -m videoflix_api.embedded` as a developer runs it: first start, demo, restart, resume."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest
from videoflix_api.embedded.__main__ import parse_args
from videoflix_api.embedded.app import canonical_host, canonical_url, redirect_target
from videoflix_core.chunks import DEFAULT_CHUNK_SECONDS

from tests.embedded.server import EmbeddedServer, make_video


def _processes_under(folder: Path) -> list[int]:
    """Pids whose working directory lies in `folder` (the transcoder runs in the media root)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if cwd.startswith(str(folder)):
            found.append(int(entry.name))
    return found


def test_first_start_demo_and_a_quiet_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = EmbeddedServer(data, args=["--demo"]).start()
    try:
        assert server.admin_email == "admin@videoflix.local"
        assert server.admin_password and len(server.admin_password) >= 12
        with server.client() as client:
            user = server.login(client)
            assert user["is_staff"] is True
            [demo] = client.get("/content/").json()
            assert demo["title"] == "Test pattern (demo)"
            ready = server.wait_final(client, demo["id"])
            assert ready["processing_state"] == "ready", ready["processing_error"]
            # A 720p sample gets three rungs, and the page is served at /.
            assert list(ready["converted_files"]) == ["120p", "360p", "720p"]
            page = client.get("/")
            assert page.status_code == 200 and "<title>Videoflix</title>" in page.text
            assert "script-src 'self'" in page.headers["content-security-policy"]
    finally:
        server.stop()
    assert (data / "secret_key").stat().st_mode & 0o777 == 0o600

    again = EmbeddedServer(data, port=server.port, args=["--demo"]).start()
    try:
        assert again.log().count("dev admin account") == 1  # the password is shown only once
        again.admin_email, again.admin_password = server.admin_email, server.admin_password
        with again.client() as client:
            again.login(client)  # the same account, the same secret: still valid
            assert len(client.get("/content/").json()) == 1  # the demo is not added twice
    finally:
        again.stop()

    # A developer who lost the password gets a new one; the old one stops working.
    reset = EmbeddedServer(data, port=server.port, args=["--reset-admin-password"]).start()
    try:
        assert reset.log().count("New password of the dev admin account") == 1
        assert reset.admin_password and reset.admin_password != server.admin_password
        with reset.client() as client:
            reset.login(client)
            stale = client.post(
                "/users/login/",
                json={"email": server.admin_email, "password": server.admin_password},
            )
            assert stale.status_code in (400, 401)
    finally:
        reset.stop()


def test_restart_resumes_an_unfinished_transcode(tmp_path: Path) -> None:
    source = make_video(tmp_path / "ten.mp4", seconds=10, width=1280, height=720)
    data = tmp_path / "data"
    server = EmbeddedServer(data, args=["--workers", "1"]).start()
    try:
        with server.client() as client:
            server.login(client)
            video_id = server.upload(client, source, "Interrupted")["id"]
            deadline = time.monotonic() + 60
            while True:
                video = server.video(client, video_id)
                if video["processing_state"] == "processing" and video["progress"] >= 5:
                    break
                assert video["processing_state"] != "ready", "finished before the restart"
                assert time.monotonic() < deadline
                time.sleep(0.05)
    finally:
        server.stop()
    # Stopping the server stops its transcoder subprocesses too: nothing keeps running.
    time.sleep(0.5)
    assert _processes_under(data) == []

    again = EmbeddedServer(data, port=server.port).start()
    again.admin_email, again.admin_password = server.admin_email, server.admin_password
    try:
        assert "Resumed unfinished transcodes" in again.log()
        with again.client() as client:
            again.login(client)
            before = again.video(client, video_id)
            assert before["processing_state"] in ("pending", "processing")
            done = again.wait_final(client, video_id)
            assert done["processing_state"] == "ready", done["processing_error"]
            assert list(done["converted_files"]) == ["120p", "360p", "720p"]
    finally:
        again.stop()


@pytest.mark.parametrize(
    "argv", [["--workers", "0"], ["--port", "70000"], ["--chunk-seconds", "-1"]]
)
def test_bad_flags_are_refused(argv: list[str], tmp_path: Path) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "videoflix_api.embedded", "--data-dir", str(tmp_path), *argv],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "must be" in result.stderr


def test_runs_on_postgresql_when_given_a_url(
    tmp_path: Path, database_url: str, sample_video: Path
) -> None:
    server = EmbeddedServer(tmp_path / "data", args=["--database-url", database_url]).start()
    try:
        assert not (tmp_path / "data" / "videoflix.sqlite3").exists()
        with server.client() as client:
            server.login(client)
            video_id = server.upload(client, sample_video, "On PostgreSQL")["id"]
            done = server.wait_final(client, video_id)
            assert done["processing_state"] == "ready", done["processing_error"]
            assert list(done["converted_files"]) == ["120p", "360p"]
    finally:
        server.stop()


def test_deleting_a_video_mid_transcode_leaves_nothing_behind(tmp_path: Path) -> None:
    source = make_video(tmp_path / "doomed.mp4", seconds=10, width=1280, height=720)
    data = tmp_path / "data"
    server = EmbeddedServer(data, args=["--workers", "1"]).start()
    try:
        with server.client() as client:
            server.login(client)
            video_id = server.upload(client, source, "Doomed")["id"]
            deadline = time.monotonic() + 60
            while server.video(client, video_id)["processing_state"] != "processing":
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert client.delete(f"/videos/{video_id}/").status_code == 204
            assert client.get(f"/videos/{video_id}/").status_code == 404
            # The running encoder is stopped and the video's prefix removed, late outputs too.
            prefix = data / "media" / "videos" / str(video_id)
            deadline = time.monotonic() + 30
            while prefix.exists() or _processes_under(data / "media"):
                assert time.monotonic() < deadline, list(prefix.rglob("*"))
                time.sleep(0.2)
            time.sleep(1)
            assert not prefix.exists()
            assert not (data / "transcodes" / f"{video_id}.json").exists()
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("listen", "canonical"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("localhost", "127.0.0.1"),
        ("0.0.0.0", "127.0.0.1"),
        ("::", "127.0.0.1"),
        ("192.168.1.20", "192.168.1.20"),
    ],
)
def test_one_host_name_for_a_listen_address(listen: str, canonical: str) -> None:
    assert canonical_host(listen) == canonical


def test_loopback_aliases_are_redirected_and_rewritten() -> None:
    own = "http://127.0.0.1:8000"
    assert redirect_target("localhost:8000", "/users/me/", "a=1", own) == own + "/users/me/?a=1"
    assert redirect_target("[::1]:8000", "/", "", own) == own + "/"
    assert redirect_target("LOCALHOST", "/x", "", own) == own + "/x"
    assert redirect_target("127.0.0.1:8000", "/", "", own) is None
    assert redirect_target("192.168.1.20:8000", "/", "", own) is None  # a LAN visitor stays
    assert redirect_target("localhost:8000", "/", "", "http://192.168.1.20:8000") is None
    assert canonical_url("http://localhost:4200") == "http://127.0.0.1:4200"
    assert canonical_url("http://localhost") == "http://127.0.0.1"
    assert canonical_url("https://app.example.com") == "https://app.example.com"


def test_help_suggests_the_canonical_host_name(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "http://127.0.0.1:4200" in text and "localhost:4200" not in text


def test_the_other_host_name_is_redirected_to_the_printed_one(tmp_path: Path) -> None:
    server = EmbeddedServer(tmp_path / "data").start()
    try:
        printed = f"http://127.0.0.1:{server.port}/"
        log = server.log()
        assert f"Videoflix (embedded) on {printed}" in log
        assert f"Open {printed}" in log and "same host name" in log
        other = f"http://localhost:{server.port}"

        # The browser was pointed at localhost: every request goes over to 127.0.0.1, where the
        # cookies are, keeping path, query, method and body (308).
        page = httpx.get(f"{other}/content/?category=a%20b", follow_redirects=False)
        assert page.status_code == 308
        assert page.headers["location"] == f"{printed}content/?category=a%20b"
        assert server.admin_email and server.admin_password
        credentials = {"email": server.admin_email, "password": server.admin_password}
        with httpx.Client(
            headers={"Origin": server.url}, follow_redirects=True, timeout=30
        ) as browser:
            signed_in = browser.post(f"{other}/users/login/", json=credentials)
            assert signed_in.status_code == 200, signed_in.text
            assert [r.status_code for r in signed_in.history] == [308]
            assert str(signed_in.url) == f"{printed}users/login/"
            # The cookies now belong to 127.0.0.1, and the session works there.
            assert {c.domain for c in browser.cookies.jar} == {"127.0.0.1"}
            assert browser.get(f"{server.url}/users/me/").json()["email"] == server.admin_email
            # ...and a later visit under localhost lands there again, still signed in.
            assert browser.get(f"{other}/users/me/").status_code == 200

        # CORS names the frontend under the same host name only: a frontend at localhost:4200
        # could never send the cookies, so it fails loudly instead of signing out silently.
        def preflight(origin: str) -> httpx.Response:
            return httpx.options(
                f"{server.url}/users/login/",
                headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
            )

        allowed = preflight("http://127.0.0.1:4200")
        assert allowed.headers["access-control-allow-origin"] == "http://127.0.0.1:4200"
        assert "access-control-allow-origin" not in preflight("http://localhost:4200").headers
    finally:
        server.stop()


def test_chunk_seconds_defaults_to_the_measured_length_and_follows_the_operators_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("VIDEOFLIX_CHUNK_SECONDS", raising=False)
    assert parse_args([]).chunk_seconds == DEFAULT_CHUNK_SECONDS  # on, as the operator
    monkeypatch.setenv("VIDEOFLIX_CHUNK_SECONDS", "0")
    assert parse_args([]).chunk_seconds == 0
    assert parse_args(["--chunk-seconds", "10"]).chunk_seconds == 10  # the flag wins
    monkeypatch.setenv("VIDEOFLIX_CHUNK_SECONDS", "soon")
    with pytest.raises(SystemExit):
        parse_args([])  # a bad variable is refused like a bad flag
