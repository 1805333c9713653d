"""The operator's reads and writes of the videos row (outcomes through `videoflix_core.outcome`)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from sqlalchemy import create_engine, select, update
from sqlalchemy.orm import Session
from videoflix_core.db.models import Video
from videoflix_core.outcome import write_outcome
from videoflix_core.states import ProcessingState
from videoflix_core.status import Outcome

from videoflix_operator import faults


@dataclass(frozen=True)
class RowView:
    """What the finalizer and the orphan check need to know of a videos row."""

    generation: int
    state: ProcessingState


class Database:
    def __init__(self, url: str) -> None:
        # pool_pre_ping: a database restart must not leave dead pooled connections behind.
        self._engine = create_engine(
            url,
            pool_pre_ping=True,
            pool_size=4,
            max_overflow=4,
            connect_args={"connect_timeout": 5},
        )

    def _write(self, outcome: Outcome) -> bool:
        with Session(self._engine) as session, session.begin():
            written = write_outcome(session, outcome)
            faults.crash_point(faults.IN_DATABASE_WRITE)  # before the commit
            return written

    async def write(self, outcome: Outcome) -> bool:
        return await asyncio.to_thread(self._write, outcome)

    def _row(self, video_id: int) -> RowView | None:
        with Session(self._engine) as session:
            found = session.execute(
                select(Video.transcode_generation, Video.processing_state).where(
                    Video.id == video_id
                )
            ).one_or_none()
        return None if found is None else RowView(found[0], ProcessingState(found[1]))

    async def row(self, video_id: int) -> RowView | None:
        """The row of `video_id`; None when it does not exist (the video was deleted)."""
        return await asyncio.to_thread(self._row, video_id)

    def _fail_unfinished(self, video_id: int, generation: int, reason: str) -> bool:
        with Session(self._engine) as session, session.begin():
            statement = (
                update(Video)
                .where(Video.id == video_id)
                .where(Video.transcode_generation == generation)
                .where(
                    Video.processing_state.in_(
                        [ProcessingState.PENDING.value, ProcessingState.PROCESSING.value]
                    )
                )
                .values(processing_state=ProcessingState.ERROR.value, processing_error=reason)
                .execution_options(synchronize_session=False)
            )
            return bool(session.execute(statement).rowcount)  # type: ignore[attr-defined]

    async def fail_unfinished(self, video_id: int, generation: int, reason: str) -> bool:
        """Mark the row `error` if it still waits for this generation's transcode (guarded, so a
        newer generation or a finished video is never touched)."""
        return await asyncio.to_thread(self._fail_unfinished, video_id, generation, reason)

    def close(self) -> None:
        self._engine.dispose()
