"""Writes transcode outcomes to the videos row (through `videoflix_core.outcome`)."""

from __future__ import annotations

import asyncio

from sqlalchemy import create_engine
from sqlalchemy.orm import Session
from videoflix_core.outcome import write_outcome
from videoflix_core.status import Outcome


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
            return write_outcome(session, outcome)

    async def write(self, outcome: Outcome) -> bool:
        return await asyncio.to_thread(self._write, outcome)

    def close(self) -> None:
        self._engine.dispose()
