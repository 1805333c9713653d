"""The videos-row write, against a real PostgreSQL migrated with the project's migrations."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
from sqlalchemy import Engine, create_engine, select
from sqlalchemy.orm import Session
from videoflix_core.db.migrate import upgrade
from videoflix_core.db.models import Video
from videoflix_core.outcome import write_outcome
from videoflix_core.states import ProcessingState
from videoflix_core.status import Outcome

FILES = {
    "360p": {
        "width": 640,
        "height": 360,
        "bitrate": 1,
        "bytes": 2,
        "durationSeconds": 3.0,
        "file": "videos/1/360p/video.mp4",
        "playlist": "videos/1/360p/index.m3u8",
    }
}


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    upgrade(database_url)
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


def add_video(engine: Engine, generation: int) -> int:
    with Session(engine) as s:
        video = Video(title="t", transcode_generation=generation)
        s.add(video)
        s.commit()
        return video.id


def ready(video_id: int, generation: int) -> Outcome:
    return Outcome(
        video_id=video_id,
        transcode_generation=generation,
        processing_state=ProcessingState.READY,
        converted_files=FILES,
        processing_error=None,
        thumbnail="videos/1/thumbnails/poster.jpg",
        sprite=None,
        storyboard="videos/1/thumbnails/storyboard.vtt",
        duration=3.0,
        progress=100,
    )


def test_writes_every_outcome_column(engine: Engine) -> None:
    vid = add_video(engine, 2)
    with Session(engine) as s, s.begin():
        assert write_outcome(s, ready(vid, 2))
    with Session(engine) as s:
        row = s.scalars(select(Video).where(Video.id == vid)).one()
        assert row.processing_state == "ready"
        assert row.converted_files == FILES
        assert row.thumbnail_key == "videos/1/thumbnails/poster.jpg"
        assert row.storyboard_key == "videos/1/thumbnails/storyboard.vtt"
        assert row.duration_seconds == 3.0
        assert row.progress == 100
        assert row.processing_error is None


def test_stale_generation_never_overwrites_a_newer_one(engine: Engine) -> None:
    vid = add_video(engine, 3)
    stale = replace(ready(vid, 2), processing_state=ProcessingState.ERROR, processing_error="old")
    with Session(engine) as s, s.begin():
        assert not write_outcome(s, stale)
    with Session(engine) as s:
        row = s.scalars(select(Video).where(Video.id == vid)).one()
        assert row.processing_state == "pending"
        assert row.processing_error is None


def test_is_idempotent_and_reports_a_missing_row(engine: Engine) -> None:
    vid = add_video(engine, 0)
    for _ in range(2):
        with Session(engine) as s, s.begin():
            assert write_outcome(s, ready(vid, 0))
    with Session(engine) as s, s.begin():
        assert not write_outcome(s, ready(vid + 1000, 0))
