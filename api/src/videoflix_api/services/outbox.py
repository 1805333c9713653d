"""The outbox of the dual write (row, then `VideoTranscode` CR) and the sweeper that drains it.

A request commits the row with `dispatch_due_at` set in the same transaction as its new
generation, then creates the CR and clears the mark. When the process dies in between (or the
cluster refuses the sweeper's attempt), the mark stays, and every API process's sweeper hands over
the rows whose mark is older than a grace period. Creating a CR that exists patches the same spec,
so a hand-over done twice changes nothing; row locks make it rare in the first place.

The sweeper also expires uploads that never completed: rows without a source (hidden from
viewers) and incomplete S3 multipart uploads under `videos/`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Select, select, update
from sqlalchemy.orm import Session
from videoflix_core.db import Video
from videoflix_core.states import ProcessingState

from videoflix_api.config import Settings
from videoflix_api.dispatch import Dispatcher
from videoflix_api.services.storage import Storage

log = logging.getLogger(__name__)

UPLOADS_PREFIX = "videos/"


def utcnow() -> datetime:
    return datetime.now(UTC)


def locks_rows(dialect: str) -> bool:
    """Whether to claim swept rows with `FOR UPDATE SKIP LOCKED`: on PostgreSQL several API
    replicas sweep at once, and each row must go to one of them; SQLite (the embedded mode) is one
    process and has no row locks, so a plain select is the whole story."""
    return dialect == "postgresql"


_Query = TypeVar("_Query", bound=Select[Any])


def _claim(session: Session, query: _Query) -> _Query:
    bind = session.get_bind()
    return query.with_for_update(skip_locked=True) if locks_rows(bind.dialect.name) else query


def owed_since(video: Video, now: datetime, grace: timedelta) -> bool:
    """Whether the hand-over of `video` is owed and overdue (the request that owed it is gone)."""
    due = video.dispatch_due_at
    return due is not None and due <= now - grace


def retry_refusal(video: Video, now: datetime, grace: timedelta) -> str | None:
    """Why staff may not retry `video` now (None: they may). A failed video can be retried, and so
    can a `pending` one whose hand-over stays owed past the grace period (it keeps failing)."""
    if not video.source_key:
        return "The video has no source yet."
    if video.processing_state == ProcessingState.ERROR.value:
        return None
    if video.processing_state == ProcessingState.PENDING.value and owed_since(video, now, grace):
        return None
    return (
        "Only videos in state 'error', or 'pending' ones whose hand-over is overdue, "
        "can be retried."
    )


def mark_owed(video: Video) -> None:
    """Record, in the transaction that commits a new generation, that its hand-over is owed."""
    video.dispatch_due_at = utcnow()


def mark_handed_over(session: Session, video_id: int, generation: int) -> None:
    """Clear the mark of `generation` (only that one: a newer generation committed meanwhile
    still owes its own hand-over) and commit."""
    session.execute(
        update(Video)
        .where(Video.id == video_id, Video.transcode_generation == generation)
        .values(dispatch_due_at=None)
        .execution_options(synchronize_session=False)
    )
    session.commit()


def hand_over_owed(
    session: Session, dispatcher: Dispatcher, *, now: datetime, grace: timedelta, batch: int
) -> list[int]:
    """Hand over up to `batch` overdue rows (claimed, so no other replica takes them meanwhile);
    the ids handed over. A row the pipeline refuses stays owed, with the reason for staff."""
    query = (
        select(Video)
        .where(Video.dispatch_due_at <= now - grace, Video.source_key.is_not(None))
        .order_by(Video.dispatch_due_at)
        .limit(batch)
    )
    done: list[int] = []
    for video in session.scalars(_claim(session, query)).all():
        try:
            dispatcher.submit(video)
        except Exception as exc:
            log.warning("Outbox hand-over failed", extra={"video_id": video.id, "reason": str(exc)})
            video.processing_error = f"Could not start the transcode yet (retrying): {exc}"
            continue
        video.dispatch_due_at = None
        video.processing_error = None
        done.append(video.id)
    session.commit()
    if done:
        log.info("Outbox handed over", extra={"video_ids": done})
    return done


def expire_sourceless(
    sessionmaker: Callable[[], Session],
    storage: Storage,
    dispatcher: Dispatcher,
    *,
    now: datetime,
    max_age: timedelta,
    batch: int,
) -> list[int]:
    """Delete up to `batch` videos whose source never arrived within `max_age`, aborting their
    multipart upload; the ids deleted. One row per transaction, each claimed, so two replicas
    never delete the same row."""
    from videoflix_api.services.videos import delete_video

    query = (
        select(Video)
        .where(Video.source_key.is_(None), Video.created_at < now - max_age)
        .order_by(Video.id)
        .limit(1)
    )
    deleted: list[int] = []
    for _ in range(batch):
        with sessionmaker() as session:
            video = session.scalars(_claim(session, query)).first()
            if video is None:
                break
            video_id = video.id
            delete_video(session, storage, dispatcher, video)
        deleted.append(video_id)
    if deleted:
        log.info("Expired videos whose upload never completed", extra={"video_ids": deleted})
    return deleted


def abort_orphan_uploads(
    session: Session, storage: Storage, *, now: datetime, max_age: timedelta
) -> list[str]:
    """Abort the incomplete multipart uploads under `videos/` older than `max_age` that no row
    knows (a row's own upload expires with the row); the upload ids aborted."""
    old = [u for u in storage.incomplete_uploads(UPLOADS_PREFIX) if u.initiated < now - max_age]
    if not old:
        return []
    known = set(
        session.scalars(
            select(Video.upload_id).where(Video.upload_id.in_([u.upload_id for u in old]))
        )
    )
    aborted = []
    for upload in old:
        if upload.upload_id in known:
            continue
        storage.abort_multipart(upload.key, upload.upload_id)
        aborted.append(upload.upload_id)
    if aborted:
        log.info("Aborted orphan multipart uploads", extra={"count": len(aborted)})
    return aborted


@dataclass
class SweepResult:
    handed_over: list[int]
    expired: list[int]
    aborted: list[str]


def sweep(
    sessionmaker: Callable[[], Session],
    storage: Storage,
    dispatcher: Dispatcher,
    settings: Settings,
    now: datetime | None = None,
) -> SweepResult:
    """One round of the sweeper; each part's failure is logged and leaves the others to run."""
    now = now or utcnow()
    result = SweepResult([], [], [])
    grace = timedelta(seconds=settings.outbox_grace_seconds)
    max_age = timedelta(seconds=settings.upload_expiry_seconds)
    try:
        with sessionmaker() as session:
            result.handed_over = hand_over_owed(
                session, dispatcher, now=now, grace=grace, batch=settings.outbox_batch
            )
    except Exception:
        log.exception("Outbox sweep failed")
    try:
        result.expired = expire_sourceless(
            sessionmaker, storage, dispatcher, now=now, max_age=max_age, batch=settings.outbox_batch
        )
        with sessionmaker() as session:
            result.aborted = abort_orphan_uploads(session, storage, now=now, max_age=max_age)
    except Exception:
        log.exception("Upload expiry sweep failed")
    return result


def app_dispatcher(state: Any) -> Dispatcher | None:
    """The app's dispatcher, built on first use like a request builds it (None while it cannot be
    built: the next round tries again)."""
    if state.dispatcher is None:
        try:
            state.dispatcher = state.dispatcher_factory()
        except Exception as exc:
            log.warning("Dispatcher unavailable for the outbox sweep", extra={"error": str(exc)})
            return None
    dispatcher: Dispatcher = state.dispatcher
    return dispatcher


async def run_sweeper(state: Any, settings: Settings) -> None:
    """Sweep every `outbox_sweep_interval_seconds`, from start-up until cancelled (the lifespan
    stops it). Rounds run in a thread: the database and Kubernetes clients block."""
    while True:
        dispatcher = app_dispatcher(state)
        if dispatcher is not None:
            await asyncio.to_thread(sweep, state.sessionmaker, state.storage, dispatcher, settings)
        await asyncio.sleep(settings.outbox_sweep_interval_seconds)
