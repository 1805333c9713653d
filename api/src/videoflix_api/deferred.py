"""Work that runs after an answer was sent, in a small thread pool of its own.

Register and forgot-password answer at once and do their lookups, writes and mail afterwards, so
their time cannot tell an existing account from an unknown one. As plain Starlette background
tasks that work would run in the request thread pool: an SMTP relay that hangs (tarpitting,
greylisting, a dead route until `smtp_timeout_seconds`) would hold one request thread per mail, and
forty stuck mails would stall every synchronous endpoint. Here the background task only hands the
work to `WORKERS` threads of its own: it still starts after the answer, a slow relay delays only
mail, graceful shutdown still sends what answers promised, and tests can wait for it (`wait_idle`).

The queue is not bounded: the per-client and per-address rate limits bound what reaches it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import BackgroundTasks

log = logging.getLogger(__name__)

# Mail and a cheap transaction each: a few threads keep up with the rate limits; password hashing
# is bounded separately (`security.configure_hashing`).
WORKERS = 4


class Deferred:
    def __init__(self, workers: int = WORKERS):
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="after-response")
        self._pending = 0
        self._idle = threading.Condition()

    def after(self, background: BackgroundTasks, work: Callable[..., None], *args: Any) -> None:
        """Run `work(*args)` in the pool once the answer was sent. Counted from now, so a caller
        holding the answer can `wait_idle` for it."""
        with self._idle:
            self._pending += 1
        background.add_task(self._pool.submit, self._run, work, args)

    def _run(self, work: Callable[..., None], args: tuple[Any, ...]) -> None:
        try:
            work(*args)
        except Exception:  # the answer is long gone: log, never lose the worker
            log.exception("After-response work failed", extra={"work": work.__name__})
        finally:
            with self._idle:
                self._pending -= 1
                if self._pending == 0:
                    self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Whether everything submitted so far finished within `timeout` seconds."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def shutdown(self) -> None:
        """Finish what was accepted (a mail promised by an answer is still sent), then stop."""
        self._pool.shutdown(wait=True)
