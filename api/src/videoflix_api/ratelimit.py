"""A fixed-window rate limiter counted in the database, so every API replica shares one limit.

Each key (`scope:client`) has one row in `rate_limit_buckets`: the hits of its current window and
when that window ends. A hit is a single `INSERT … ON CONFLICT DO UPDATE … RETURNING` statement,
atomic on PostgreSQL and SQLite alike, so concurrent replicas never lose or double-count a hit and
no extra server (Redis) is needed. The window starts at a key's first hit (not at a wall-clock
boundary, which would let a client burst twice the limit across it). Replicas compare times from
their own clocks, which NTP keeps well within the one-second resolution of `Retry-After`.

Expired rows are deleted opportunistically, at most once per `prune_interval` per process and in
bounded batches, so the table stays the size of the keys active in one window.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Engine, Table, case, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from videoflix_core.db import RateLimitBucket

log = logging.getLogger(__name__)

_buckets = cast(Table, RateLimitBucket.__table__)
_MAX_KEY = 255


def retry_after(hits: int, limit: int, resets_at: datetime, now: datetime) -> int | None:
    """The decision: None while `hits` (this one included) is within `limit`, else the whole
    seconds (at least 1) until the window ends, for `Retry-After`."""
    if hits <= limit:
        return None
    return max(1, math.ceil((resets_at - now).total_seconds()))


def storage_key(key: str) -> str:
    """Keys fit the column: a long one (a client-chosen e-mail can be long) becomes a digest,
    so two long keys never share a bucket by truncation."""
    if len(key) <= _MAX_KEY:
        return key
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


class RateLimiter:
    def __init__(
        self,
        engine: Engine,
        clock: Callable[[], float] = time.time,
        prune_interval: float = 60.0,
        prune_batch: int = 1000,
    ):
        dialects: dict[str, Callable[..., Any]] = {
            "postgresql": postgresql.insert,
            "sqlite": sqlite.insert,
        }
        if engine.dialect.name not in dialects:
            raise ValueError(f"rate limits need PostgreSQL or SQLite, not {engine.dialect.name}")
        self._engine = engine
        self._insert = dialects[engine.dialect.name]
        self._clock = clock
        self._prune_interval = prune_interval
        self._prune_batch = prune_batch
        self._next_prune = 0.0
        self._prune_lock = threading.Lock()

    def hit(self, key: str, limit: int, window_seconds: int) -> int | None:
        """Count one attempt for `key`; return the seconds to wait when over `limit`, else None."""
        now = self.now()
        insert = self._insert(_buckets).values(
            key=storage_key(key), resets_at=now + timedelta(seconds=window_seconds), hits=1
        )
        # SET expressions see the row as it was before this statement: an ended window restarts.
        expired = _buckets.c.resets_at <= now
        statement = insert.on_conflict_do_update(
            index_elements=[_buckets.c.key],
            set_={
                "hits": case((expired, 1), else_=_buckets.c.hits + 1),
                "resets_at": case((expired, insert.excluded.resets_at), else_=_buckets.c.resets_at),
            },
        ).returning(_buckets.c.hits, _buckets.c.resets_at)
        # Its own short transaction: the hit counts even when the request's transaction rolls back.
        with self._engine.begin() as connection:
            hits, resets_at = connection.execute(statement).one()
        self._maybe_prune(now)
        return retry_after(hits, limit, resets_at, now)

    def refund(self, key: str) -> None:
        """Take back one hit of `key`'s current window (e.g. a login that succeeded, so that only
        failures use up a limit). Counting first and refunding later, rather than counting only
        after the outcome, keeps parallel attempts from all slipping in under the limit."""
        now = self.now()
        statement = (
            update(_buckets)
            .where(
                _buckets.c.key == storage_key(key), _buckets.c.resets_at > now, _buckets.c.hits > 0
            )
            .values(hits=_buckets.c.hits - 1)
        )
        with self._engine.begin() as connection:
            connection.execute(statement)

    def now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def prune(self, now: datetime | None = None) -> int:
        """Delete up to `prune_batch` ended windows; return how many went."""
        now = now or self.now()
        ended = select(_buckets.c.key).where(_buckets.c.resets_at <= now).limit(self._prune_batch)
        # The outer condition is re-checked on the locked row: a window another replica has just
        # restarted is kept.
        statement = delete(_buckets).where(_buckets.c.key.in_(ended), _buckets.c.resets_at <= now)
        with self._engine.begin() as connection:
            return connection.execute(statement).rowcount

    def _maybe_prune(self, now: datetime) -> None:
        moment = now.timestamp()
        # Non-blocking: one request per process prunes, the others do not wait for it.
        if moment < self._next_prune or not self._prune_lock.acquire(blocking=False):
            return
        try:
            if moment < self._next_prune:
                return
            self._next_prune = moment + self._prune_interval
            deleted = self.prune(now)
            if deleted:
                log.debug("Pruned rate-limit windows", extra={"deleted": deleted})
        except Exception:
            # Pruning is housekeeping: a failure must not fail the request that happened to run it.
            log.warning("Could not prune rate-limit windows", exc_info=True)
        finally:
            self._prune_lock.release()
