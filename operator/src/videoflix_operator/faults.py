"""TEST-ONLY crash points: `VIDEOFLIX_FAULT_CRASH_AT=<point>:<nth>` makes the process exit at once
(`os._exit`, no cleanup, like SIGKILL) the nth time it reaches `<point>`.

Fault tests (tests/faults/test_operator_kills.py) use it to kill the operator exactly where a
crash is most harmful (between a Job create and the status patch, in the middle of the database
write, during cleanup), which random external kills hit only by luck. Unset, every point is a
no-op. The variable is read once per process, on the first point reached.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from functools import lru_cache

log = logging.getLogger(__name__)
ENV = "VIDEOFLIX_FAULT_CRASH_AT"
EXIT_CODE = 70

# Where reconcile.py and the finalizer call `crash_point`; each name is one place.
AFTER_JOB_CREATE = "after-job-create"  # a Job exists, the CR status does not say so yet
IN_DATABASE_WRITE = "in-database-write"  # the row's transaction is open, not committed
AFTER_DATABASE_WRITE = "after-database-write"  # the row is committed, the CR status is not
BEFORE_STATUS_PATCH = "before-status-patch"  # everything done but the status patch
AFTER_PREFIX_DELETE = "after-prefix-delete"  # superseded outputs deleted, Jobs/status not done
CLEANUP_AFTER_JOBS_DELETED = "cleanup-after-jobs-deleted"  # finalizer: Jobs gone, storage not
CLEANUP_AFTER_STORAGE = "cleanup-after-storage"  # finalizer: storage done, finalizer not removed
POINTS = frozenset(
    {
        AFTER_JOB_CREATE,
        IN_DATABASE_WRITE,
        AFTER_DATABASE_WRITE,
        BEFORE_STATUS_PATCH,
        AFTER_PREFIX_DELETE,
        CLEANUP_AFTER_JOBS_DELETED,
        CLEANUP_AFTER_STORAGE,
    }
)


@dataclass(frozen=True)
class CrashAt:
    point: str
    nth: int  # 1: the first time the point is reached


def parse(value: str | None) -> CrashAt | None:
    """`<point>:<nth>` (nth defaults to 1); None when unset. An unknown point is an error, so a
    typo in a test fails loudly instead of never crashing."""
    if not value:
        return None
    point, _, nth = value.partition(":")
    if point not in POINTS:
        raise ValueError(f"{ENV}: unknown crash point {point!r} (known: {sorted(POINTS)})")
    count = int(nth) if nth else 1
    if count < 1:
        raise ValueError(f"{ENV}: nth must be >= 1, got {count}")
    return CrashAt(point, count)


@lru_cache(maxsize=1)
def _armed() -> CrashAt | None:
    armed = parse(os.environ.get(ENV))
    if armed is not None:
        log.warning("Fault hook armed (test only): exit at %s #%d", armed.point, armed.nth)
    return armed


_reached: dict[str, int] = {}


def crash_point(point: str) -> None:
    """Exit the process here if the armed point is reached for the nth time."""
    armed = _armed()
    if armed is None or armed.point != point:
        return
    _reached[point] = _reached.get(point, 0) + 1
    if _reached[point] >= armed.nth:
        log.warning("Fault hook: exiting at %s #%d", point, _reached[point])
        os._exit(EXIT_CODE)
