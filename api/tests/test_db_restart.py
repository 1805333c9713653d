"""The API after a PostgreSQL restart: pooled connections the restart killed are not handed out."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from videoflix_api.config import Settings
from videoflix_api.main import PING_IDLE_SECONDS
from videoflix_core.db.migrate import upgrade

from tests.fixtures.postgres import PostgresProcess
from tests.fixtures.procs import wait_until

from .conftest import BASE, build_app, login, make_user


@pytest.fixture
def own_postgres() -> Iterator[PostgresProcess]:
    pg = PostgresProcess.create()
    try:
        pg.start()
        yield pg
    finally:
        pg.remove()


def test_idle_connections_killed_by_a_restart_are_replaced(
    settings: Settings, own_postgres: PostgresProcess
) -> None:
    name = f"t_{uuid.uuid4().hex[:16]}"
    own_postgres.server.psql(f'CREATE DATABASE "{name}"')
    url = own_postgres.server.url_for(name)
    upgrade(url)
    app = build_app(settings.model_copy(update={"database_url": url}))
    try:
        with TestClient(app, base_url=BASE) as client:
            login(client, make_user(app, "viewer@example.com"))
            routes = ["/content/?limit=5", "/videos/", "/users/me/"]
            assert [client.get(path).status_code for path in routes] == [200, 200, 200]
            pool = app.state.engine.pool
            assert pool.checkedin() >= 1  # connections the restart will kill, back in the pool
            idle_since = time.monotonic()
            own_postgres.stop()
            own_postgres.start()
            # The pool pings only connections idle this long (a busy one comes back within
            # milliseconds, and one that dies in use fails its request and invalidates the pool).
            wait_until(
                lambda: time.monotonic() - idle_since > PING_IDLE_SECONDS,
                "the pooled connections to count as idle",
                timeout=PING_IDLE_SECONDS + 10,
            )
            for path in routes:
                r = client.get(path)
                assert r.status_code == 200, (path, r.text)
    finally:
        app.state.engine.dispose()
