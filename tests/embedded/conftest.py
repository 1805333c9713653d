from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from videoflix_api.embedded.media import UrlSigner
from videoflix_api.embedded.storage import LocalStorage
from videoflix_core.db.migrate import upgrade

from tests.embedded.local import Env
from tests.embedded.server import EmbeddedServer, ReadyServer, make_video
from tests.fixtures.procs import missing_tool


def _need_ffmpeg() -> None:
    if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:
        missing_tool("ffmpeg/ffprobe are not installed (apt-get install -y ffmpeg)")


@pytest.fixture(scope="session")
def sample_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4 s 640x360 H.264/AAC video (ladder: 120p and 360p)."""
    _need_ffmpeg()
    return make_video(tmp_path_factory.mktemp("media") / "sample.mp4", seconds=4)


@pytest.fixture(scope="module")
def ready_server(
    tmp_path_factory: pytest.TempPathFactory, sample_video: Path
) -> Iterator[ReadyServer]:
    """One real embedded server with one uploaded video transcoded to ready."""
    server = EmbeddedServer(tmp_path_factory.mktemp("embedded") / "data").start()
    try:
        with server.client() as client:
            server.login(client)
            created = server.upload(client, sample_video, "Range test")
            video = server.wait_final(client, created["id"])
            assert video["processing_state"] == "ready", video
            yield ReadyServer(server, client, video)
    finally:
        server.stop()


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    upgrade(url)
    engine = create_engine(url)
    storage = LocalStorage(tmp_path / "media", UrlSigner(b"k" * 32, "http://127.0.0.1:1"))
    yield Env(engine, storage, tmp_path / "state")
    engine.dispose()
