"""Rate limits shared through the database: replicas, concurrency, windows, pruning, SQLite."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, func, select
from videoflix_api.config import Settings
from videoflix_api.ratelimit import RateLimiter
from videoflix_core.db import RateLimitBucket
from videoflix_core.db.migrate import upgrade

from .conftest import BASE, build_app


class Clock:
    def __init__(self, now: float = 1_800_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    upgrade(database_url)
    # Room for the threads of the concurrency test.
    engine = create_engine(database_url, pool_size=10)
    yield engine
    engine.dispose()


def bucket_hits(engine: Engine, key: str) -> int | None:
    with engine.connect() as connection:
        hits: int | None = connection.execute(
            select(RateLimitBucket.hits).where(RateLimitBucket.key == key)
        ).scalar_one_or_none()
        return hits


def bucket_count(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(RateLimitBucket)).scalar())


def test_two_replicas_share_one_limit(settings: Settings) -> None:
    limited = settings.model_copy(update={"rate_limit_login": 4})
    replicas = [build_app(limited), build_app(limited)]
    body = {"email": "a@example.com", "password": "wrong password"}
    try:
        with (
            TestClient(replicas[0], base_url=BASE) as a,
            TestClient(replicas[1], base_url=BASE) as b,
        ):
            # Four attempts split over two replicas use up the one shared limit of four.
            assert [c.post("/users/login/", json=body).status_code for c in (a, b, a, b)] == [
                401
            ] * 4
            for client in (a, b):
                r = client.post("/users/login/", json=body)
                assert r.status_code == 429
                wait = int(r.headers["retry-after"])
                assert 1 <= wait <= settings.rate_limit_window_seconds
                assert r.json()["detail"] == (
                    f"Request was throttled. Expected available in {wait} seconds."
                )
            assert bucket_hits(replicas[0].state.engine, "login:testclient") == 6
            # The address limit refused first, so the e-mail's count stopped at the attempts let in.
            assert bucket_hits(replicas[0].state.engine, "login-email:a@example.com") == 4
    finally:
        for app in replicas:
            app.state.engine.dispose()


def test_window_resets_in_real_time(settings: Settings) -> None:
    app = build_app(
        settings.model_copy(update={"rate_limit_email_exists": 1, "rate_limit_window_seconds": 1})
    )
    try:
        with TestClient(app, base_url=BASE) as client:
            url = "/users/email-exists/?email=a@example.com"
            assert client.get(url).status_code == 200
            r = client.get(url)
            assert r.status_code == 429 and r.headers["retry-after"] == "1"
            time.sleep(1.05)
            assert client.get(url).status_code == 200
    finally:
        app.state.engine.dispose()


def test_concurrent_hits_from_two_replicas_count_exactly(engine: Engine, database_url: str) -> None:
    other = create_engine(database_url, pool_size=10)
    replicas = [RateLimiter(engine), RateLimiter(other)]
    threads, per_thread, limit = 8, 25, 60
    start = threading.Barrier(threads)
    outcomes: list[int | None] = []
    lock = threading.Lock()

    def attempt(limiter: RateLimiter) -> None:
        start.wait()
        for _ in range(per_thread):
            wait = limiter.hit("login:198.51.100.1", limit, 60)
            with lock:
                outcomes.append(wait)

    workers = [threading.Thread(target=attempt, args=(replicas[i % 2],)) for i in range(threads)]
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=60)
    finally:
        other.dispose()
    assert len(outcomes) == threads * per_thread
    # A lost update would let more than `limit` through; a double count, fewer.
    assert outcomes.count(None) == limit
    assert all(wait is not None and 1 <= wait <= 60 for wait in outcomes if wait is not None)
    assert bucket_hits(engine, "login:198.51.100.1") == threads * per_thread


def test_window_resets_and_keys_are_separate(engine: Engine) -> None:
    clock = Clock()
    limiter = RateLimiter(engine, clock=clock)
    assert [limiter.hit("k", 2, 60) for _ in range(2)] == [None, None]
    assert limiter.hit("k", 2, 60) == 60
    clock.now += 59.5
    assert limiter.hit("k", 2, 60) == 1
    assert limiter.hit("other", 2, 60) is None
    clock.now += 0.5  # the window has ended: the next hit starts a new one
    assert [limiter.hit("k", 2, 60) for _ in range(2)] == [None, None]
    assert limiter.hit("k", 2, 60) == 60
    assert bucket_hits(engine, "k") == 3


def test_ended_windows_are_pruned_in_bounded_batches(engine: Engine) -> None:
    clock = Clock()
    limiter = RateLimiter(engine, clock=clock, prune_interval=300, prune_batch=3)
    for i in range(7):
        limiter.hit(f"old{i}", 5, 60)
    clock.now += 30
    limiter.hit("live", 5, 60)
    clock.now += 40  # the seven `old` windows have ended, `live` has not
    assert [limiter.prune() for _ in range(4)] == [3, 3, 1, 0]
    assert bucket_count(engine) == 1 and bucket_hits(engine, "live") == 1

    for i in range(5):
        limiter.hit(f"old{i}", 5, 60)
    clock.now += 100
    limiter.hit("fresh", 5, 60)  # within the prune interval of the first hit: no pruning yet
    assert bucket_count(engine) == 7
    clock.now += 300
    limiter.hit("fresh", 5, 60)  # the interval has passed: this hit prunes one batch
    assert bucket_count(engine) == 7 - 3


def test_sqlite_embedded_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'embedded.db'}"
    upgrade(url)
    engine = create_engine(url, connect_args={"check_same_thread": False})
    try:
        clock = Clock()
        limiter = RateLimiter(engine, clock=clock)
        assert [limiter.hit("k", 2, 60) for _ in range(3)] == [None, None, 60]
        clock.now += 60
        assert limiter.hit("k", 2, 60) is None

        outcomes: list[int | None] = []
        lock = threading.Lock()

        def attempt() -> None:
            for _ in range(10):
                wait = limiter.hit("busy", 15, 60)
                with lock:
                    outcomes.append(wait)

        workers = [threading.Thread(target=attempt) for _ in range(4)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=60)
        assert len(outcomes) == 40 and outcomes.count(None) == 15
        assert bucket_hits(engine, "busy") == 40
    finally:
        engine.dispose()
