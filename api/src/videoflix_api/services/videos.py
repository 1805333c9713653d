"""Video queries and changes: keyset-paginated listing, favorites, sources, dispatch, deletion."""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, NamedTuple, Protocol, TypeVar

from sqlalchemy import Connection, Select, bindparam, delete, func, select, tuple_
from sqlalchemy.orm import Session
from videoflix_core import storage as keys
from videoflix_core.db import Favorite, Video
from videoflix_core.states import ProcessingState

from videoflix_api.dispatch import Dispatcher, DispatchError
from videoflix_api.services import outbox
from videoflix_api.services.storage import Storage, StorageError

log = logging.getLogger(__name__)


_Query = TypeVar("_Query", bound=Select[*tuple[Any, ...]])


class InvalidCursor(ValueError):
    pass


def encode_cursor(created_at: datetime, video_id: int) -> str:
    raw = json.dumps([created_at.isoformat(), video_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        stamp, video_id = json.loads(raw)
        when = datetime.fromisoformat(stamp)
        if when.tzinfo is None or not isinstance(video_id, int):
            raise ValueError("bad cursor")
        return when, video_id
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidCursor("Invalid cursor.") from exc


class PublicVideo(Protocol):
    """What a video's public JSON is made of: an ORM `Video` or a `VideoSummary`."""

    @property
    def id(self) -> int: ...
    @property
    def title(self) -> str: ...
    @property
    def description(self) -> str: ...
    @property
    def category(self) -> str: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def thumbnail_key(self) -> str | None: ...
    @property
    def converted_files(self) -> dict[str, Any]: ...
    @property
    def processing_state(self) -> str: ...
    @property
    def processing_error(self) -> str | None: ...
    @property
    def progress(self) -> int: ...
    @property
    def duration_seconds(self) -> float | None: ...


class VideoSummary(NamedTuple):
    """The columns of a listed video (`SUMMARY_COLUMNS`, in this order), without an ORM entity:
    loading 50 entities (identity map, instance state) cost more than the rest of a list page.
    A named tuple: made from a row at a quarter of a frozen dataclass's cost."""

    id: int
    title: str
    description: str
    category: str
    created_at: datetime
    thumbnail_key: str | None
    converted_files: dict[str, Any]
    processing_state: str
    processing_error: str | None
    progress: int
    duration_seconds: float | None


SUMMARY_COLUMNS = (
    Video.id,
    Video.title,
    Video.description,
    Video.category,
    Video.created_at,
    Video.thumbnail_key,
    Video.converted_files,
    Video.processing_state,
    Video.processing_error,
    Video.progress,
    Video.duration_seconds,
)


@dataclass(frozen=True)
class VideoFilter:
    category: str | None = None
    state: ProcessingState | None = None
    search: str | None = None
    favorites_of: int | None = None
    # Staff also see videos whose source has not arrived (an upload in progress or abandoned).
    with_sourceless: bool = False


def filter_params(filters: VideoFilter) -> dict[str, Any]:
    """The bound values of `filters`, by the names `_filtered` binds; a filter that is off has
    none, so the keys also say which conditions the query has."""
    params: dict[str, Any] = {}
    if filters.category is not None:
        params["category"] = filters.category
    if filters.state is not None:
        params["state"] = filters.state.value
    if filters.search:
        escaped = filters.search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        params["title_pattern"] = f"%{escaped}%"
    if filters.favorites_of is not None:
        params["favorites_of"] = filters.favorites_of
    return params


def _filtered(conditions: frozenset[str], with_sourceless: bool, query: _Query) -> _Query:
    """`query` restricted to the `conditions` (keys of `filter_params`, values bound at execution),
    newest first (ties broken by id, as the cursor is)."""
    if not with_sourceless:
        query = query.where(Video.source_key.is_not(None))
    if "category" in conditions:
        query = query.where(Video.category == bindparam("category"))
    if "state" in conditions:
        query = query.where(Video.processing_state == bindparam("state"))
    if "title_pattern" in conditions:
        query = query.where(Video.title.ilike(bindparam("title_pattern"), escape="\\"))
    if "favorites_of" in conditions:
        query = query.join(Favorite, Favorite.video_id == Video.id).where(
            Favorite.user_id == bindparam("favorites_of")
        )
    return query.order_by(Video.created_at.desc(), Video.id.desc())


@lru_cache(maxsize=128)
def _page_query(conditions: frozenset[str], with_sourceless: bool, after: bool) -> Select[Any]:
    """The statement of one page for a shape of filters, built once: building and hashing a fresh
    statement on every request cost more than running it."""
    query = select(*SUMMARY_COLUMNS)
    if after:
        after_key = tuple_(
            bindparam("after_created_at", type_=Video.created_at.type), bindparam("after_id")
        )
        query = query.where(tuple_(Video.created_at, Video.id) < after_key)
    return _filtered(conditions, with_sourceless, query).limit(bindparam("limit"))


def list_videos(
    conn: Connection, filters: VideoFilter, *, limit: int, cursor: str | None = None
) -> tuple[list[VideoSummary], str | None]:
    """One page, newest first, and the cursor of the next page (None on the last one).

    Keyset pagination over (created_at, id), backed by the composite indexes, so page 2,000 costs
    what page 1 costs; an OFFSET would scan every skipped row.
    """
    params = filter_params(filters)
    query = _page_query(frozenset(params), filters.with_sourceless, cursor is not None)
    if cursor is not None:
        params["after_created_at"], params["after_id"] = decode_cursor(cursor)
    params["limit"] = limit + 1
    rows = [VideoSummary._make(row) for row in conn.execute(query, params).all()]
    if len(rows) > limit:
        last = rows[limit - 1]
        return rows[:limit], encode_cursor(last.created_at, last.id)
    return rows, None


def iter_videos(
    sessionmaker: Callable[[], Session],
    filters: VideoFilter,
    *,
    batch: int,
    max_items: int = 0,
) -> Iterator[VideoSummary]:
    """Every matching video newest first (at most `max_items` when > 0), `batch` rows at a time.

    For a response streamed while the client reads it: each batch is one keyset page in its own
    short session, closed before its rows are handed out, so memory stays flat in the number of
    rows and no transaction stays open while a slow client reads.
    """
    cursor: str | None = None
    left = max_items if max_items > 0 else None
    while left is None or left > 0:
        size = batch if left is None else min(batch, left)
        with sessionmaker() as session:
            rows, cursor = list_videos(session.connection(), filters, limit=size, cursor=cursor)
        yield from rows
        if left is not None:
            left -= len(rows)
        if cursor is None:
            return


def cursor_after(conn: Connection, filters: VideoFilter, count: int) -> str | None:
    """The cursor of the page that follows the first `count` videos, None when there are no more
    (what a capped catalogue names as its next page before it starts streaming)."""
    # Only the keys of the last row and of the one after it (the index alone answers this).
    params = filter_params(filters)
    query = _filtered(
        frozenset(params), filters.with_sourceless, select(Video.created_at, Video.id)
    )
    keys = conn.execute(query.offset(count - 1).limit(2), params).all()
    return encode_cursor(keys[0].created_at, keys[0].id) if len(keys) == 2 else None


def categories(session: Session, *, with_sourceless: bool) -> list[str]:
    """Categories in use by the videos the user may list (`VideoFilter.with_sourceless`)."""
    query = select(Video.category).distinct().where(Video.category != "")
    if not with_sourceless:
        query = query.where(Video.source_key.is_not(None))
    return list(session.scalars(query.order_by(Video.category)))


def get_video(session: Session, video_id: int) -> Video | None:
    if not 0 < video_id < 2**31:
        return None
    return session.get(Video, video_id)


@dataclass(frozen=True, slots=True)
class Playback:
    """What a playback URL is decided from."""

    converted_files: dict[str, Any]
    duration_seconds: float | None


PLAYBACK = select(Video.converted_files, Video.duration_seconds).where(
    Video.id == bindparam("video_id")
)


def playback_params(video_id: int) -> dict[str, int]:
    """`PLAYBACK`'s parameters. An id outside the column's range asks for 0, which no row has
    (SQLite refuses integers beyond 64 bits; the query still runs, e.g. with the account check)."""
    return {"video_id": video_id if 0 < video_id < 2**31 else 0}


def playback_of(row: Sequence[Any] | None) -> Playback | None:
    """A `PLAYBACK` row as what a playback URL is decided from."""
    return None if row is None else Playback(row[0] or {}, row[1])


def get_playback(conn: Connection, video_id: int) -> Playback | None:
    """The two columns a playback URL needs, without loading the whole row as an entity."""
    return playback_of(conn.execute(PLAYBACK, playback_params(video_id)).first())


def visible(video: Video, *, staff: bool) -> bool:
    """Whether a user sees `video`: viewers only once its source has arrived (before, there is
    nothing to show but an upload that may never complete), staff always."""
    return staff or video.source_key is not None


def is_favorite(session: Session, user_id: int, video_id: int) -> bool:
    return session.get(Favorite, (user_id, video_id)) is not None


def toggle_favorite(session: Session, user_id: int, video_id: int) -> bool:
    """Add or remove a favorite; True when it is a favorite afterwards."""
    existing = session.get(Favorite, (user_id, video_id))
    if existing is not None:
        session.delete(existing)
        session.flush()
        return False
    session.add(Favorite(user_id=user_id, video_id=video_id))
    session.flush()
    return True


def create_video(
    session: Session, *, title: str, description: str, category: str, created_by: int | None
) -> Video:
    video = Video(
        title=title,
        description=description,
        category=category,
        created_by_id=created_by,
        converted_files={},
    )
    session.add(video)
    session.flush()
    return video


def update_video(session: Session, video: Video, changes: dict[str, Any]) -> Video:
    for name in ("title", "description", "category"):
        if name in changes and changes[name] is not None:
            setattr(video, name, changes[name])
    session.flush()
    return video


def best_rendition(converted: dict[str, Any]) -> str | None:
    """The finished quality with the most lines (ties: the larger file)."""
    if not converted:
        return None
    return max(
        converted,
        key=lambda n: (converted[n].get("height") or 0, converted[n].get("bytes") or 0, n),
    )


def rung_lines(name: str, info: dict[str, Any]) -> int:
    """A quality's rung in lines: the number in its name (`720p`, the short side, also for a
    portrait video whose displayed height is larger), else its height."""
    digits = name[:-1] if name.endswith("p") else ""
    return int(digits) if digits.isdigit() else int(info.get("height") or 0)


def playable_quality(converted: dict[str, Any], asked: str | None) -> str | None:
    """The quality to serve when `asked` is requested: that one when it is finished, else the
    best one below it, else the lowest above it; the best one when nothing is asked; None when
    nothing is playable yet.

    The client picks `asked` from the browser's bandwidth estimate alone, without knowing what
    this video has, so a missing quality must degrade gracefully instead of failing playback.
    """
    playable = {name: info for name, info in converted.items() if info.get("file")}
    if not playable:
        return None
    if asked is None:
        return best_rendition(playable)
    if asked in playable:
        return asked
    wanted = rung_lines(asked, {})
    lines = {name: rung_lines(name, info) for name, info in playable.items()}
    lower = [name for name in playable if lines[name] <= wanted]
    if lower:
        return max(lower, key=lambda name: (lines[name], name))
    return min(playable, key=lambda name: (lines[name], name))


def dispatch(session: Session, dispatcher: Dispatcher, video: Video) -> None:
    """Hand the committed row to the pipeline; on failure the row says `error` with the reason.

    Called after the row is committed (with its hand-over marked owed, `outbox.mark_owed`) so the
    operator never sees a CR for a row it cannot read; should this process die before the CR
    exists, the outbox sweeper hands the row over later.
    """
    try:
        dispatcher.submit(video)
    except DispatchError as exc:
        log.warning("Dispatch failed", extra={"video_id": video.id, "reason": str(exc)})
        _failed(session, video, f"Could not start the transcode: {exc}")
    except Exception as exc:
        log.exception("Dispatch failed", extra={"video_id": video.id})
        _failed(session, video, f"Could not start the transcode: {type(exc).__name__}")
    else:
        outbox.mark_handed_over(session, video.id, video.transcode_generation)


def _failed(session: Session, video: Video, reason: str) -> None:
    # Staff see the reason and retry; the sweeper does not keep retrying what was refused.
    current = session.scalar(
        select(Video.transcode_generation).where(Video.id == video.id).with_for_update()
    )
    if current != video.transcode_generation:
        # Superseded: a concurrent replace committed and handed over a newer generation (the CRD
        # refuses this older spec); this failure says nothing about the row.
        session.commit()
        return
    video.processing_state = ProcessingState.ERROR.value
    video.processing_error = reason
    video.dispatch_due_at = None
    session.commit()


def lock_for_new_generation(session: Session, video: Video) -> None:
    """Re-read `video` under a row lock (PostgreSQL `SELECT … FOR UPDATE`) until the commit.

    Two concurrent replaces (or retries) would otherwise both read generation N and both write
    N + 1 with different sources; locked, the second waits and sees the first's commit, so each
    gets its own generation and the later one wins, sources included.
    """
    session.execute(
        select(Video)
        .where(Video.id == video.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one()


def set_source(
    session: Session, storage: Storage, dispatcher: Dispatcher, video: Video, key: str, size: int
) -> Video:
    """Point the video at a newly stored source and (re)start its transcode.

    A new source supersedes everything derived from the old one: a new transcode generation,
    no finished qualities, no thumbnail, until the pipeline reports again.
    """
    lock_for_new_generation(session, video)
    old_key = video.source_key  # read under the lock: a concurrent replace may have changed it
    video.source_key = key
    video.source_bytes = size
    video.transcode_generation += 1
    video.processing_state = ProcessingState.PENDING.value
    video.processing_error = None
    video.progress = 0
    video.converted_files = {}
    video.thumbnail_key = video.sprite_key = video.storyboard_key = None
    video.duration_seconds = None
    video.upload_id = video.upload_key = None
    outbox.mark_owed(video)
    session.commit()
    if old_key and old_key != key:
        try:
            storage.delete(old_key)
        except (StorageError, Exception):
            log.warning("Could not delete replaced source", extra={"key": old_key})
    dispatch(session, dispatcher, video)
    return video


def retry(session: Session, dispatcher: Dispatcher, video: Video) -> Video:
    lock_for_new_generation(session, video)
    video.transcode_generation += 1
    video.processing_state = ProcessingState.PENDING.value
    video.processing_error = None
    video.progress = 0
    outbox.mark_owed(video)
    session.commit()
    dispatch(session, dispatcher, video)
    return video


def delete_video(session: Session, storage: Storage, dispatcher: Dispatcher, video: Video) -> None:
    """Remove the row, stop the pipeline, and remove everything under the video's prefix.

    Deleting the CR lets the operator's finalizer clean the prefix; the API cleans it as well so a
    video that never reached the pipeline (or an embedded setup) leaks nothing either.
    """
    video_id = video.id
    if video.upload_id and video.upload_key:
        try:
            storage.abort_multipart(video.upload_key, video.upload_id)
        except StorageError:
            log.warning("Could not abort upload", extra={"video_id": video_id})
    session.execute(delete(Favorite).where(Favorite.video_id == video_id))
    session.delete(video)
    session.commit()
    try:
        dispatcher.cancel(video_id)
    except DispatchError as exc:
        log.warning("Could not cancel transcode", extra={"video_id": video_id, "reason": str(exc)})
    storage.delete_prefix(keys.video_prefix(video_id))


def count_videos(session: Session) -> int:
    return int(session.scalar(select(func.count(Video.id))) or 0)
