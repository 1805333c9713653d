"""A fixed-window rate limiter kept in process memory.

Every API replica counts on its own, so with N replicas an attacker gets at most N times the
configured attempts; that bound is acceptable for login/register/reset throttling and keeps the
database out of the hot path of refused requests.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable


class RateLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000):
        self._clock = clock
        self._max_keys = max_keys
        self._windows: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str, limit: int, window_seconds: int) -> int | None:
        """Count one attempt for `key`; return the seconds to wait when over `limit`, else None."""
        now = self._clock()
        with self._lock:
            start, count = self._windows.get(key, (now, 0))
            if now - start >= window_seconds:
                start, count = now, 0
            count += 1
            if len(self._windows) >= self._max_keys and key not in self._windows:
                self._prune(now, window_seconds)
            self._windows[key] = (start, count)
            if count > limit:
                return max(1, math.ceil(start + window_seconds - now))
            return None

    def reset(self) -> None:
        with self._lock:
            self._windows.clear()

    def _prune(self, now: float, window_seconds: int) -> None:
        expired = [k for k, (start, _) in self._windows.items() if now - start >= window_seconds]
        for k in expired:
            del self._windows[k]
        if len(self._windows) >= self._max_keys:
            # Still full of live keys (a flood of distinct addresses): forget the oldest half.
            for k in sorted(self._windows, key=lambda k: self._windows[k][0])[
                : self._max_keys // 2
            ]:
                del self._windows[k]
