"""The reconcile work queue: each CR queued once, never handed to two workers at once, a change
seen mid-pass not lost, the earliest of delayed adds kept."""

from __future__ import annotations

import asyncio

from videoflix_operator.workqueue import WorkQueue

A, B = ("vf", "video-1"), ("vf", "video-2")


def run(coroutine):  # type: ignore[no-untyped-def]
    return asyncio.run(asyncio.wait_for(coroutine, timeout=10))


def test_a_key_is_queued_once_however_often_it_is_added() -> None:
    async def scenario() -> list[tuple[str, str]]:
        queue = WorkQueue()
        for key in (A, B, A, A, B):
            queue.add(key)
        assert len(queue) == 2
        return [await queue.get(), await queue.get()]

    assert run(scenario()) == [A, B]


def test_a_key_added_while_processed_comes_back_after_done_not_before() -> None:
    async def scenario() -> None:
        queue = WorkQueue()
        queue.add(A)
        assert await queue.get() == A
        queue.add(A)  # a change seen while a worker has it
        assert len(queue) == 0  # a second worker must not take it now
        second = asyncio.create_task(queue.get())
        await asyncio.sleep(0.01)
        assert not second.done()
        queue.done(A)
        assert await second == A
        queue.done(A)
        assert len(queue) == 0

    run(scenario())


def test_a_delayed_add_keeps_its_earliest_deadline_and_an_add_supersedes_it() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        queue = WorkQueue()
        started = loop.time()
        queue.add_after(A, 0.2)
        queue.add_after(A, 30)  # later: the earlier deadline stands
        assert await queue.get() == A
        assert 0.15 <= loop.time() - started < 5
        queue.done(A)

        queue.add_after(B, 30)
        queue.add_after(B, 0.05)  # earlier: replaces the 30 s one
        assert await queue.get() == B
        queue.done(B)

        queue.add_after(A, 30)
        queue.add(A)  # now: the delayed run is dropped, not run again later
        assert await queue.get() == A
        queue.done(A)
        assert queue._delayed == {}

    run(scenario())


def test_close_cancels_what_is_still_delayed() -> None:
    async def scenario() -> None:
        queue = WorkQueue()
        queue.add_after(A, 0.05)
        queue.close()
        await asyncio.sleep(0.1)
        assert len(queue) == 0

    run(scenario())
