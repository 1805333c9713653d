"""A viewer watches to the end and seeks after the base URL lifetime has passed, in Chromium, with
no 403: through HLS (hls.js) and progressively (`<video src>` of the `video-url` URL), against
the S3 path (the API on MinIO: private bucket, presigned URLs) and the embedded `/media/` path.

The base expiry is 10 s (the setting's minimum) and no pause allowance is given, so a playback URL
lives 60 s + 10 s for the 60 s video (`playback_expiry`); a URL living only the base 10 s would be
refused on the seek. The 4x playback rate and a pause make the seek's range request start after
the 10 s; the test checks that it did, and that a URL with the base lifetime issued at the same
moment is refused by then (so the 10 s really are enforced and only the playback rule kept the
video playing).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.embedded.server import EmbeddedServer
from tests.fixtures.procs import missing_tool, wait_until
from tests.fixtures.servers import serve

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
HLS_JS = REPO / "api/src/videoflix_api/web/static/vendor/hls.js/hls.min.js"
BASE_EXPIRY = 10
DURATION = 60
RATE = 4
PASSWORD = "playback-Passw0rd"

# The source: 640x360 (so the ladder makes 120p and 360p), noise so the 360p rung runs near its
# 900 kbit/s cap (~7 MB): larger than what Chromium reads ahead, so the seek needs a new request.
SOURCE_ARGV = [
    "ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
    "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25,noise=alls=16:allf=t",
    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
    "-t", str(DURATION), "-c:v", "libx264", "-preset", "veryfast", "-b:v", "1500k",
    "-maxrate", "1500k", "-bufsize", "3000k", "-pix_fmt", "yuv420p",
    "-c:a", "aac", "-b:a", "96k", "-shortest",
]  # fmt: skip

PAGE = "<!doctype html><html><body><video id='v' muted playsinline></video></body></html>"


@pytest.fixture(scope="module")
def source_video() -> Path:
    """The 60 s source, generated once and cached (keyed by its ffmpeg arguments)."""
    if shutil.which("ffmpeg") is None:
        missing_tool("ffmpeg is not installed (apt-get install -y ffmpeg)")
    digest = hashlib.sha256(" ".join(SOURCE_ARGV).encode()).hexdigest()[:12]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "videoflix-test-media"
    path = cache / f"playback-{DURATION}s-{digest}.mp4"
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".part.mp4")
        subprocess.run([*SOURCE_ARGV, str(partial)], check=True, timeout=300)
        partial.replace(path)
    return path


@dataclass
class Network:
    """Every response the page got and when its request started / its response ended (epoch s)."""

    responses: list[tuple[str, int, float]] = field(default_factory=list)
    finished: list[tuple[str, float, float]] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def attach(self, page: Any) -> None:
        page.on("response", self._response)
        page.on("requestfinished", self._finished)
        page.on("requestfailed", lambda r: self.failed.append(f"{r.url} {r.failure}"))

    def _response(self, response: Any) -> None:
        start = response.request.timing["startTime"] / 1000
        self.responses.append((response.url, response.status, start))

    def _finished(self, request: Any) -> None:
        timing = request.timing
        start = timing["startTime"] / 1000
        self.finished.append((request.url, start, start + max(0.0, timing["responseEnd"]) / 1000))

    def errors(self) -> list[tuple[str, int]]:
        return [(url, status) for url, status, _ in self.responses if status >= 400]

    def issued_at(self, marker: str) -> float:
        """When the last response carrying playback URLs (its URL contains `marker`) ended: the
        URLs in it were signed before that."""
        ends = [end for url, _, end in self.finished if marker in url]
        assert ends, f"no {marker} response: {self.finished}"
        return max(ends)

    def media_started_after(self, is_media: Callable[[str], bool], moment: float) -> list[int]:
        return [s for url, s, start in self.responses if is_media(url) and start > moment]


def _login(page: Any, email: str, password: str) -> None:
    status = page.evaluate(
        """async ([email, password]) => (await fetch('/users/login/', {
            method: 'POST', headers: {'Content-Type': 'application/json'},
            body: JSON.stringify({email, password}), credentials: 'same-origin'})).status""",
        [email, password],
    )
    assert status == 200


def _start_hls(page: Any, video_id: int) -> None:
    # A small forward buffer, nothing kept behind: fragments keep being fetched as playback goes
    # on, and the seek near the end cannot be served from what was loaded before the pause.
    page.add_script_tag(path=str(HLS_JS))
    page.evaluate(
        """([id, rate]) => {
            const v = document.getElementById('v');
            window.playerErrors = [];
            const hls = new Hls({maxBufferLength: 4, maxMaxBufferLength: 6, backBufferLength: 0});
            window.hls = hls;
            hls.on(Hls.Events.ERROR, (_e, d) => window.playerErrors.push(d.type + ':' + d.details));
            hls.on(Hls.Events.MANIFEST_PARSED, () => {
                // One fixed quality: one media playlist, fetched once, whose URL we time.
                hls.currentLevel = hls.levels.length - 1;
                v.playbackRate = rate;
                v.play();
            });
            hls.loadSource(`/videos/${id}/hls/master.m3u8`);
            hls.attachMedia(v);
        }""",
        [video_id, RATE],
    )


def _start_progressive(page: Any, video_id: int, quality: str) -> None:
    # A viewer on a 2 Mbit/s line: by the seek (~17 s in) at most ~4.3 MB of the 7.5 MB file can
    # have arrived, so the seek to 50 s (~6 MB in) needs a new range request. Unthrottled, loopback
    # and socket buffers let Chromium hold the whole file before the pause.
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": 250_000, "uploadThroughput": -1},
    )
    page.evaluate(
        """async ([id, quality, rate]) => {
            const r = await fetch(`/content/video-url/${id}/?quality=${quality}`);
            const {url} = await r.json();
            const v = document.getElementById('v');
            window.playerErrors = [];
            v.addEventListener('error', () => window.playerErrors.push('media:' + v.error.code));
            v.preload = 'auto';
            v.src = url;
            v.playbackRate = rate;
            await v.play();
        }""",
        [video_id, quality, 1],
    )


def _wait(page: Any, network: Network, condition: str) -> None:
    """`condition` (JS) holds within 60 s; else fail naming what the player and network saw."""
    try:
        page.wait_for_function(condition, timeout=60_000)
    except Exception as exc:
        seen = page.evaluate(
            """() => { const v = document.getElementById('v');
                return {t: v.currentTime, ready: v.readyState, errors: window.playerErrors}; }"""
        )
        raise AssertionError(
            f"not reached: {condition}; player {seen}; errors {network.errors()}; "
            f"failed {network.failed}; last {network.responses[-5:]}"
        ) from exc


def _watch_pause_seek_to_end(page: Any, network: Network, issued: Callable[[], float]) -> float:
    """Play a while, pause until the base lifetime of the URLs is over, seek near the end and play
    to `ended`; returns the moment the seek was made (epoch seconds)."""
    _wait(page, network, "() => document.getElementById('v').currentTime >= 4")
    page.evaluate("() => document.getElementById('v').pause()")
    # The pause outlasts the base expiry of the newest playback URL (a poll with a deadline).
    wait_until(lambda: time.time() > issued() + BASE_EXPIRY + 1.5, "the base expiry", 60)
    seek_at = time.time()
    page.evaluate(
        """(rate) => { const v = document.getElementById('v');
            v.currentTime = v.duration - 10; v.playbackRate = rate; v.play(); }""",
        RATE,
    )
    _wait(page, network, "() => document.getElementById('v').ended")
    state = page.evaluate(
        """() => { const v = document.getElementById('v');
            return {t: v.currentTime, d: v.duration, errors: window.playerErrors}; }"""
    )
    assert state["errors"] == [], state
    assert state["d"] == pytest.approx(DURATION, abs=0.5), state
    assert state["t"] == pytest.approx(state["d"], abs=0.5), state
    return seek_at


def _check(
    network: Network, is_media: Callable[[str], bool], issued: float, seek_at: float
) -> None:
    assert network.errors() == [], network.errors()
    assert network.failed == [] or all("ERR_ABORTED" in f for f in network.failed), network.failed
    after = network.media_started_after(is_media, issued + BASE_EXPIRY)
    assert seek_at > issued + BASE_EXPIRY
    # The seek really went to storage after the base expiry, and storage answered with media.
    media = [(s, round(t - issued, 1)) for u, s, t in network.responses if is_media(u)]
    assert after and all(status in (200, 206) for status in after), media


# ---- the S3 path: the API process on MinIO and PostgreSQL ----


@dataclass(frozen=True)
class S3Api:
    url: str
    video_id: int
    email: str
    short_url: str  # a URL with the base lifetime, presigned when the player starts


def _transcode_360p(minio: Any, bucket: str, video_id: int, scratch: Path) -> dict[str, Any]:
    """The real transcoder's rendition step against MinIO, as a Job pod runs it; its result."""
    from videoflix_core.status import parse_result

    prefix = f"s3://{bucket}/videos/{video_id}/"
    scratch.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [sys.executable, "-m", "videoflix_transcoder", "rendition",
         "--source", prefix + "source/source.mp4", "--dest", prefix,
         "--name", "360p", "--width", "640", "--height", "360"],
        env={**os.environ, **minio.env(bucket), "VIDEOFLIX_SCRATCH_DIR": str(scratch),
             "VIDEOFLIX_RESULT_FILE": str(scratch / "result.json")},
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = parse_result(proc.stdout)
    assert result is not None, proc.stdout[-2000:]
    return result


@pytest.fixture
def s3_api(
    database_url: str, minio_server: Any, s3_bucket: str, source_video: Path, tmp_path: Path
) -> Iterator[S3Api]:
    from videoflix_api.config import Settings
    from videoflix_api.main import create_app
    from videoflix_api.services.accounts import create_user
    from videoflix_api.services.storage import S3Storage
    from videoflix_core.db import Video
    from videoflix_core.db.migrate import upgrade
    from videoflix_core.status import converted_files
    from videoflix_core.transcode import (
        RenditionOutput,
        RenditionStatus,
        StepPhase,
        VideoTranscodeStatus,
    )

    upgrade(database_url)
    settings = Settings(
        dev_mode=True,
        database_url=database_url,
        s3_endpoint_url=minio_server.endpoint_url,
        s3_bucket=s3_bucket,
        s3_access_key_id=minio_server.access_key,
        s3_secret_access_key=minio_server.secret_key,
        s3_region=minio_server.region,
        cookie_secure=False,  # plain http://127.0.0.1
        presign_expiry_seconds=BASE_EXPIRY,
        playback_pause_seconds=0,
        log_json=False,
    )
    app = create_app(settings, configure_logs=False)
    email = "long-viewer@example.com"
    with app.state.sessionmaker() as session:
        create_user(session, email, PASSWORD)
        video = Video(title="Sixty seconds", description="", category="")
        session.add(video)
        session.commit()
        video_id = video.id
    minio_server.client().upload_file(
        str(source_video), s3_bucket, f"videos/{video_id}/source/source.mp4"
    )
    [entry] = _transcode_360p(minio_server, s3_bucket, video_id, tmp_path / "scratch")["renditions"]
    output = RenditionOutput.model_validate(entry)
    status = VideoTranscodeStatus(
        renditions={"360p": RenditionStatus(phase=StepPhase.SUCCEEDED, height=360, output=output)}
    )
    files = converted_files(status)
    with app.state.sessionmaker() as session:
        row = session.get(Video, video_id)
        assert row is not None
        row.processing_state, row.progress = "ready", 100
        row.converted_files = files
        row.duration_seconds = float(files["360p"]["durationSeconds"])
        session.commit()
    storage = S3Storage(settings)
    try:
        with serve(app) as url:
            yield S3Api(
                url,
                video_id,
                email,
                storage.url(str(files["360p"]["file"]), expires_in=BASE_EXPIRY),
            )
    finally:
        app.state.engine.dispose()


def _open(browser: Any, base: str) -> tuple[Any, Any, Network]:
    context = browser.new_context()
    context.set_default_timeout(60_000)
    page = context.new_page()
    network = Network()
    network.attach(page)
    # Our player on the API's own origin: its cookies and relative URLs just work. The document
    # really comes from the server (not a Playwright-fulfilled route), so Chromium's local network
    # access checks see a loopback page and let it fetch from MinIO on loopback.
    page.goto(f"{base}/health/")
    page.set_content(PAGE)
    return context, page, network


@pytest.mark.parametrize("mode", ["hls", "progressive"])
def test_s3_playback_outlives_the_base_expiry(browser: Any, s3_api: S3Api, mode: str) -> None:
    context, page, network = _open(browser, s3_api.url)
    try:
        _login(page, s3_api.email, PASSWORD)
        marker = "/hls/360p/index.m3u8" if mode == "hls" else "/content/video-url/"
        if mode == "hls":
            _start_hls(page, s3_api.video_id)
        else:
            _start_progressive(page, s3_api.video_id, "360p")
        seek_at = _watch_pause_seek_to_end(page, network, lambda: network.issued_at(marker))
        issued = network.issued_at(marker)
        _check(network, lambda u: "/360p/video.mp4?" in u and "X-Amz-" in u, issued, seek_at)
        # The base lifetime is enforced: a URL presigned for it when playback began is refused.
        assert httpx.get(s3_api.short_url, headers={"Range": "bytes=0-7"}).status_code == 403
    finally:
        context.close()


# ---- the embedded path: signed /media/ links ----


@pytest.fixture(scope="module")
def embedded_video(
    tmp_path_factory: pytest.TempPathFactory, source_video: Path
) -> Iterator[tuple[EmbeddedServer, int]]:
    saved = {
        k: os.environ.get(k)
        for k in ("VIDEOFLIX_PRESIGN_EXPIRY_SECONDS", "VIDEOFLIX_PLAYBACK_PAUSE_SECONDS")
    }
    os.environ["VIDEOFLIX_PRESIGN_EXPIRY_SECONDS"] = str(BASE_EXPIRY)
    os.environ["VIDEOFLIX_PLAYBACK_PAUSE_SECONDS"] = "0"
    try:
        server = EmbeddedServer(tmp_path_factory.mktemp("embedded-expiry") / "data").start()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    try:
        with server.client() as client:
            server.login(client)
            created = server.upload(client, source_video, "Sixty seconds")
            video = server.wait_final(client, created["id"], timeout=400)
            assert video["processing_state"] == "ready", video
            assert video["duration_seconds"] == pytest.approx(DURATION, abs=0.5)
            yield server, video["id"]
    finally:
        server.stop()


def _poster_link(server: EmbeddedServer, video_id: int) -> str:
    with server.client() as client:
        server.login(client)
        r = client.get(f"/videos/{video_id}/thumbnail/", follow_redirects=False)
        assert r.status_code == 302, r.text
        return str(r.headers["location"])


@pytest.mark.parametrize("mode", ["hls", "progressive"])
def test_embedded_playback_outlives_the_base_expiry(
    browser: Any, embedded_video: tuple[EmbeddedServer, int], mode: str
) -> None:
    server, video_id = embedded_video
    context, page, network = _open(browser, server.url)
    try:
        _login(page, server.admin_email or "", server.admin_password or "")
        marker = "/hls/360p/index.m3u8" if mode == "hls" else "/content/video-url/"
        poster = _poster_link(server, video_id)
        if mode == "hls":
            _start_hls(page, video_id)
        else:
            _start_progressive(page, video_id, "360p")
        seek_at = _watch_pause_seek_to_end(page, network, lambda: network.issued_at(marker))
        issued = network.issued_at(marker)
        _check(network, lambda u: "/media/" in u and "/360p/video.mp4?" in u, issued, seek_at)
        assert httpx.get(poster).status_code == 403
    finally:
        context.close()
