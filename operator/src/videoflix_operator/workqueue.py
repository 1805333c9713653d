"""The CRs waiting for a reconcile, handed to a fixed number of workers (client-go's workqueue).

Every trigger (a CR created or resumed, a Job event, a retry after a failure) only adds the
CR's key here; `Reconciler.run_worker` tasks take keys one at a time. So the operator's memory
and its load on the API server are bounded by the workers, not by the backlog: a burst of
10,000 uploads is 10,000 queued tuples, not 10,000 kopf handler tasks each holding its CR's
event body and a thread call in flight (measured: 605 MiB at 7,100 CRs that way).

A key is queued at most once; a key added while a worker has it is handed out again after
`done`, so one CR is never reconciled by two workers at once and a change seen mid-pass is not
lost. A delayed add keeps the earliest of its deadlines.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

Key = tuple[str, str]  # (namespace, name)


@dataclass
class WorkQueue:
    _ready: deque[Key] = field(default_factory=deque)
    _dirty: set[Key] = field(default_factory=set)  # to be handed out (queued or re-queued)
    _processing: set[Key] = field(default_factory=set)
    _delayed: dict[Key, asyncio.TimerHandle] = field(default_factory=dict)
    _wakeup: asyncio.Event = field(default_factory=asyncio.Event)

    def __len__(self) -> int:
        """Keys waiting for a worker (delayed ones not yet due are not counted)."""
        return len(self._ready)

    def add(self, key: Key) -> None:
        handle = self._delayed.pop(key, None)
        if handle is not None:
            handle.cancel()  # running now covers the later run too
        if key in self._dirty:
            return
        self._dirty.add(key)
        if key not in self._processing:  # else `done` queues it
            self._ready.append(key)
            self._wakeup.set()

    def add_after(self, key: Key, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        if key in self._dirty:
            return
        loop = asyncio.get_running_loop()
        due = loop.time() + delay
        known = self._delayed.get(key)
        if known is not None:
            if known.when() <= due:
                return
            known.cancel()
        self._delayed[key] = loop.call_at(due, self._due, key)

    def _due(self, key: Key) -> None:
        self._delayed.pop(key, None)
        self.add(key)

    async def get(self) -> Key:
        while not self._ready:
            self._wakeup.clear()
            await self._wakeup.wait()
        key = self._ready.popleft()
        self._dirty.discard(key)
        self._processing.add(key)
        return key

    def done(self, key: Key) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._ready.append(key)
            self._wakeup.set()

    def close(self) -> None:
        for handle in self._delayed.values():
            handle.cancel()
        self._delayed.clear()
