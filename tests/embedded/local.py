"""A LocalDispatcher harness for tests: a migrated SQLite database, local storage, a state
folder, and the few row operations the dispatcher tests need."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from videoflix_api.embedded.dispatcher import LocalDispatcher
from videoflix_api.embedded.storage import LocalStorage
from videoflix_core.db import Video
from videoflix_core.storage import source_key


@dataclass
class Env:
    engine: Engine
    storage: LocalStorage
    state_dir: Path

    def dispatcher(self, **kwargs: object) -> LocalDispatcher:
        return LocalDispatcher(self.storage, self.engine, self.state_dir, **kwargs)  # type: ignore[arg-type]

    def add_video(self, source: Path, name: str = "clip.mp4") -> Video:
        with Session(self.engine, expire_on_commit=False) as db:
            video = Video(title=source.stem, converted_files={})
            db.add(video)
            db.flush()
            key = source_key(video.id, name)
            target = self.storage.path(key)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
            video.source_key = key
            video.transcode_generation = 1
            db.commit()
            return video

    def row(self, video_id: int) -> Video:
        with Session(self.engine, expire_on_commit=False) as db:
            video = db.get(Video, video_id)
            assert video is not None
            return video

    def wait(
        self,
        video_id: int,
        states: tuple[str, ...] = ("ready", "error"),
        timeout: float = 120,
        min_progress: int = 0,
    ) -> Video:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            video = self.row(video_id)
            if video.processing_state in states and video.progress >= min_progress:
                return video
            time.sleep(0.05)
        raise TimeoutError(f"video {video_id} stayed {self.row(video_id).processing_state}")


