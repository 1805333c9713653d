"""API test setup: the real app on real PostgreSQL, MinIO and SMTP (tests/fixtures)."""

from __future__ import annotations

import re
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from videoflix_api.config import Settings
from videoflix_api.main import create_app
from videoflix_api.services.accounts import create_user
from videoflix_core.db import Video
from videoflix_core.db.migrate import upgrade

from tests.fixtures.servers import serve

BASE = "https://testserver"
PASSWORD = "correct horse battery"


@pytest.fixture(autouse=True)
def _clients_send_their_origin(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every TestClient sends `Origin: <its base URL>`, as a browser does on each write: the CSRF
    layer refuses cookie-carrying writes that name no origin. A request's own `Origin` (or
    `headers={"Origin": ...}` given to the client) still wins; tests of the CSRF layer itself
    live in tests/security and send their headers explicitly."""
    init = TestClient.__init__

    def with_origin(
        self: TestClient, app: Any, base_url: str = "http://testserver", *args: Any, **kwargs: Any
    ) -> None:
        kwargs["headers"] = {"Origin": base_url.rstrip("/"), **(kwargs.get("headers") or {})}
        init(self, app, base_url, *args, **kwargs)

    monkeypatch.setattr(TestClient, "__init__", with_origin)


@pytest.fixture
def settings(database_url: str, minio_server: Any, s3_bucket: str, smtp_server: Any) -> Settings:
    upgrade(database_url)
    return Settings(
        dev_mode=False,
        secret_key=secrets.token_urlsafe(48),
        database_url=database_url,
        database_pool_size=5,
        s3_endpoint_url=minio_server.endpoint_url,
        s3_bucket=s3_bucket,
        s3_access_key_id=minio_server.access_key,
        s3_secret_access_key=minio_server.secret_key,
        s3_region=minio_server.region,
        smtp_host=smtp_server.host,
        smtp_port=smtp_server.port,
        frontend_url="https://app.videoflix.test",
        public_base_url=BASE,
        refresh_reuse_grace_seconds=0,
        log_json=True,
        # Tests that need the outbox sweeper turn it on (or call `outbox.sweep` themselves).
        outbox_sweep_interval_seconds=0,
    )


def build_app(settings: Settings, **inject: Any) -> FastAPI:
    return create_app(settings, configure_logs=False, **inject)


@pytest.fixture
def app(settings: Settings) -> Iterator[FastAPI]:
    application = build_app(settings)
    yield application
    application.state.engine.dispose()


class SettledClient(TestClient):
    """A TestClient whose requests return once the app's after-response work (account mail,
    registration writes) finished, as Starlette's own background tasks do under TestClient: a
    test reads the mailbox right after the request."""

    def request(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        response = super().request(*args, **kwargs)
        assert self.app.state.deferred.wait_idle(30), "after-response work still running"  # type: ignore[attr-defined]
        return response


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with SettledClient(app, base_url=BASE) as test_client:
        yield test_client


def live_login(url: str, account: Account) -> dict[str, str]:
    """Sign in at a `serve`d app; the cookie values it set, to send by hand (they are Secure, and
    the live server speaks plain HTTP on loopback)."""
    response = httpx.post(
        url + "/users/login/",
        json={"email": account.email, "password": account.password},
        headers={"Origin": "https://app.videoflix.test"},
    )
    assert response.status_code == 200, response.text
    jar: SimpleCookie = SimpleCookie()
    for header in response.headers.get_list("set-cookie"):
        jar.load(header)
    return {name: morsel.value for name, morsel in jar.items()}


@pytest.fixture
def live_url(app: FastAPI) -> Iterator[str]:
    with serve(app) as url:
        yield url


@dataclass
class Account:
    id: int
    email: str
    password: str


def make_user(app: FastAPI, email: str, *, staff: bool = False, active: bool = True) -> Account:
    with app.state.sessionmaker() as session:
        user = create_user(session, email, PASSWORD, active=active, staff=staff)
        session.commit()
        return Account(user.id, user.email, PASSWORD)


def login(client: TestClient, account: Account, remember: bool = False) -> dict[str, Any]:
    response = client.post(
        "/users/login/",
        json={"email": account.email, "password": account.password, "remember": remember},
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


@pytest.fixture
def user(app: FastAPI) -> Account:
    return make_user(app, "viewer@example.com")


@pytest.fixture
def staff(app: FastAPI) -> Account:
    return make_user(app, "staff@example.com", staff=True)


@pytest.fixture
def viewer_client(client: TestClient, user: Account) -> TestClient:
    login(client, user)
    return client


def add_video(app: FastAPI, **fields: Any) -> int:
    with app.state.sessionmaker() as session:
        # With a source by default: viewers never see a video whose source has not arrived.
        defaults = {"title": "A video", "description": "", "category": "", "source_key": "x.mp4"}
        video = Video(**{**defaults, **fields})
        session.add(video)
        session.commit()
        return video.id


def links(text: str) -> list[str]:
    return re.findall(r"https?://[^\s\"<>]+", text)


# Real media, generated once per session with Debian's ffmpeg (lavfi test sources).
@dataclass(frozen=True)
class Media:
    source: Path  # a 2 s 320x240 H.264/AAC MP4
    rendition_mp4: Path  # one fragmented MP4 ...
    rendition_playlist: Path  # ... and its byte-range HLS media playlist


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> Media:
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed (apt-get install ffmpeg)")
    out = tmp_path_factory.mktemp("media")
    source = out / "source.mp4"
    subprocess.run(
        [
            "ffmpeg",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=25",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=44100",
            "-t",
            "2",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-shortest",
            str(source),
        ],
        check=True,
    )
    rendition = out / "120p"
    rendition.mkdir()
    subprocess.run(
        [
            "ffmpeg",
            "-loglevel",
            "error",
            "-i",
            str(source),
            "-vf",
            "scale=-2:120",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "25",
            "-c:a",
            "aac",
            "-f",
            "hls",
            "-hls_time",
            "1",
            "-hls_playlist_type",
            "vod",
            "-hls_segment_type",
            "fmp4",
            "-hls_flags",
            "single_file",
            "-hls_segment_filename",
            str(rendition / "video.mp4"),
            str(rendition / "index.m3u8"),
        ],
        check=True,
    )
    return Media(source, rendition / "video.mp4", rendition / "index.m3u8")


def put_ready_video(app: FastAPI, minio: Any, bucket: str, media: Media, **fields: Any) -> int:
    """A video whose 120p rendition and poster really exist in MinIO, as the operator leaves it."""
    video_id = add_video(app, **fields)
    prefix = f"videos/{video_id}/"
    client = minio.client()
    client.upload_file(str(media.rendition_mp4), bucket, prefix + "120p/video.mp4")
    client.upload_file(str(media.rendition_playlist), bucket, prefix + "120p/index.m3u8")
    client.put_object(Bucket=bucket, Key=prefix + "thumbnails/poster.jpg", Body=b"\xff\xd8jpeg")
    with app.state.sessionmaker() as session:
        video = session.get(Video, video_id)
        assert video is not None
        video.processing_state = "ready"
        video.progress = 100
        video.thumbnail_key = prefix + "thumbnails/poster.jpg"
        video.duration_seconds = 2.0
        video.converted_files = {
            "120p": {
                "width": 160,
                "height": 120,
                "bitrate": 150_000,
                "bytes": media.rendition_mp4.stat().st_size,
                "durationSeconds": 2.0,
                "file": prefix + "120p/video.mp4",
                "playlist": prefix + "120p/index.m3u8",
            }
        }
        session.commit()
    return video_id


@dataclass(frozen=True)
class Cluster:
    kube: Any
    namespace: str

    def transcode(self, video_id: int) -> dict[str, Any] | None:
        path = (
            f"/apis/videoflix.io/v1alpha1/namespaces/{self.namespace}/videotranscodes/"
            f"video-{video_id}"
        )
        result: dict[str, Any] | None = self.kube.client.get_or_none(path)
        return result


@pytest.fixture
def cluster(request: pytest.FixtureRequest) -> Cluster:
    """The real control plane (tests/cluster) and a fresh namespace for this test."""
    try:
        kube = request.getfixturevalue("kube")
        namespace = request.getfixturevalue("kube_namespace")
    except pytest.FixtureLookupError:
        pytest.skip("the kube fixture is not loaded: add tests.cluster.fixtures to pytest_plugins")
    return Cluster(kube, namespace)


@pytest.fixture
def staff_app(settings: Settings, cluster: Cluster) -> Iterator[FastAPI]:
    """The app with the real Kubernetes dispatcher, creating CRs in the test's namespace."""
    application = build_app(
        settings.model_copy(
            update={
                "kubeconfig": cluster.kube.kubeconfig,
                "namespace": cluster.namespace,
            }
        )
    )
    yield application
    application.state.engine.dispose()


@pytest.fixture
def staff_client(staff_app: FastAPI) -> Iterator[TestClient]:
    with TestClient(staff_app, base_url=BASE) as test_client:
        login(test_client, make_user(staff_app, "staff@example.com", staff=True))
        yield test_client


@pytest.fixture(scope="session")
def big_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real video larger than one 5 MiB multipart part (lossless, so it is big)."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed (apt-get install ffmpeg)")
    path = tmp_path_factory.mktemp("big") / "big.mp4"
    subprocess.run(
        [
            "ffmpeg",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=640x360:rate=25",
            "-t",
            "2",
            "-vf",
            "noise=alls=60:allf=t",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-qp",
            "0",
            "-pix_fmt",
            "yuv420p",
            str(path),
        ],
        check=True,
    )
    assert path.stat().st_size > 6 * 1024 * 1024, path.stat().st_size
    return path
