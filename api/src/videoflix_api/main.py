"""The FastAPI application: `create_app(settings, storage=…, dispatcher=…, mailer=…)`."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import orjson
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import sessionmaker
from starlette.types import ASGIApp, Receive, Scope, Send

from videoflix_api import security
from videoflix_api.config import Settings
from videoflix_api.deferred import Deferred
from videoflix_api.deps import ACCESS_COOKIE, REFRESH_COOKIE
from videoflix_api.dispatch import Dispatcher, make_dispatcher
from videoflix_api.errors import install_error_handlers
from videoflix_api.mail import Mailer, SmtpMailer
from videoflix_api.observability import Metrics, RequestContextMiddleware, configure_logging
from videoflix_api.ratelimit import RateLimiter
from videoflix_api.routes import health, staff, users, videos
from videoflix_api.services import outbox
from videoflix_api.services.storage import Storage, make_storage

log = logging.getLogger(__name__)

DESCRIPTION = """
The Videoflix API. Authentication uses HttpOnly cookies (`vf_access`, `vf_refresh`) set by
`/users/login/`; API clients may send the access token as `Authorization: Bearer` instead.

**CSRF**: cookies are SameSite (configurable) and every state-changing request must come from a
trusted origin (`Origin`, else `Referer`, checked against the API's own origin, the frontend origin
and `VIDEOFLIX_CORS_ORIGINS`): OWASP's standard-header verification. A foreign origin is refused
even without cookies (login CSRF), `Sec-Fetch-Site: cross-site` only passes for a configured
frontend origin, and a request carrying auth cookies must name its origin.

Errors look like Django REST Framework's: `{"detail": "…"}` or `{"field": ["message", …]}` (400);
throttled requests get 429 with `Retry-After`.
"""


def make_engine(settings: Settings) -> Engine:
    url = settings.database_url
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"check_same_thread": False}, json_deserializer=orjson.loads
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

        return engine
    engine = create_engine(
        url,
        pool_size=settings.database_pool_size,
        max_overflow=10,
        # A list page reads 51 `converted_files` documents: with the standard library's parser
        # that was ~7 us each, ~10 % of the page's CPU; orjson parses them at a fraction.
        json_deserializer=orjson.loads,
    )
    ping_when_idle(engine, PING_IDLE_SECONDS)
    return engine


# A pooled connection unused for this long is pinged before it is handed out again.
PING_IDLE_SECONDS = 1.0


def ping_when_idle(engine: Engine, idle_seconds: float) -> None:
    """Ping a pooled connection before reuse only when it sat idle for `idle_seconds`.

    A database restart must not leave dead connections that fail the next requests. SQLAlchemy's
    `pool_pre_ping` pings on every checkout, a round trip per request (~35 µs of our CPU each);
    under load a connection comes back within milliseconds. A connection that died while in
    use fails its request anyway, and SQLAlchemy then invalidates the whole pool, so only an
    idle connection could hand a dead one to the next request: that one is pinged. Raising
    DisconnectionError makes the pool replace it and check out again (SQLAlchemy's documented
    custom pessimistic ping).
    """

    @event.listens_for(engine, "checkin")
    def _idle_from(_dbapi_connection, record):  # type: ignore[no-untyped-def]
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_connection, record, _proxy):  # type: ignore[no-untyped-def]
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since < idle_seconds:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            raise DisconnectionError(f"idle connection failed its ping: {exc}") from exc
        if not alive:
            raise DisconnectionError("idle connection failed its ping")


# The cyclic collector's generation thresholds while serving (CPython's default is 700, 10, 10).
SERVING_GC_THRESHOLDS = (50_000, 20, 10)


@contextlib.contextmanager
def server_gc() -> Iterator[None]:
    """The garbage collector tuned for serving, while the app serves.

    Start-up builds ~170k objects that live as long as the process (modules, the app, SQLAlchemy's
    and pydantic's structures): frozen, the collector stops walking them in every full
    collection. A list request in flight holds a few thousand container objects, so with 16 in
    flight the default threshold of 700 ran a collection every few requests, walking (and
    promoting) live requests' objects. Measured (bench/api.py's list, in-process): collector time
    ~1.4 ms per list request before, ~0.4 ms frozen, ~0 frozen with these thresholds. The price
    is cyclic garbage waiting for up to 50k allocations (a few MB). Undone on shutdown: tests
    build many apps in one process.
    """
    before = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(*SERVING_GC_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


class CsrfMiddleware:
    """Refuses cookie-authenticated unsafe requests from untrusted origins (see `security`)."""

    def __init__(self, app: ASGIApp, settings: Settings):
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in security.UNSAFE_METHODS:
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            cookies = headers.get("cookie", "")
            has_cookie = f"{ACCESS_COOKIE}=" in cookies or f"{REFRESH_COOKIE}=" in cookies
            own = self.settings.public_base_url or (
                f"{scope.get('scheme', 'http')}://{headers.get('host', '')}"
            )
            reason = security.csrf_violation(
                scope["method"],
                origin=headers.get("origin"),
                referer=headers.get("referer"),
                fetch_site=headers.get("sec-fetch-site"),
                own_origin=own,
                trusted_origins=self.settings.allowed_origins,
                has_auth_cookie=has_cookie,
            )
            if reason:
                response = JSONResponse({"detail": f"CSRF Failed: {reason}"}, status_code=403)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(
    settings: Settings | None = None,
    *,
    storage: Storage | None = None,
    dispatcher: Dispatcher | None = None,
    mailer: Mailer | None = None,
    configure_logs: bool = True,
) -> FastAPI:
    """Build the app. Injected parts (the embedded mode's storage and dispatcher) win over the
    ones `settings` would choose."""
    settings = settings or Settings()
    if configure_logs:
        configure_logging(settings.log_level, settings.log_json)
    engine = make_engine(settings)
    metrics = Metrics()
    security.configure_hashing(
        concurrency=settings.password_hash_concurrency,
        memory_kib=settings.password_hash_memory_kib,
        time_cost=settings.password_hash_time_cost,
        parallelism=settings.password_hash_parallelism,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.migrate_on_start:
            from videoflix_core.db.migrate import upgrade

            upgrade(settings.database_url)
        log.info("Started Videoflix API", extra={"dispatcher": settings.dispatcher})
        # Every replica sweeps: row locks give each owed hand-over to one of them.
        sweeper = (
            asyncio.create_task(outbox.run_sweeper(app.state, settings), name="outbox-sweeper")
            if settings.outbox_sweep_interval_seconds > 0
            else None
        )
        with server_gc():
            yield
        if sweeper is not None:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
        # Uvicorn stops accepting and drains in-flight requests before this runs (graceful).
        app.state.shutting_down = True
        app.state.deferred.shutdown()
        engine.dispose()
        log.info("Stopped Videoflix API")

    app = FastAPI(
        title="Videoflix API",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        redirect_slashes=False,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessionmaker = sessionmaker(engine, expire_on_commit=False)
    # The same pool without transactions, for `deps.Reader`: a read-only request needs no
    # BEGIN/COMMIT round trips.
    app.state.read_engine = engine.execution_options(isolation_level="AUTOCOMMIT")
    app.state.storage = storage if storage is not None else make_storage(settings)
    app.state.dispatcher = dispatcher
    # Built on first use: the API serves (and passes its probes) while the cluster is unreachable.
    app.state.dispatcher_factory = lambda: make_dispatcher(settings)
    app.state.mailer = mailer if mailer is not None else SmtpMailer(settings)
    app.state.deferred = Deferred()
    app.state.metrics = metrics
    # Counted in the database: every replica shares one limit.
    app.state.limiter = RateLimiter(engine)
    app.state.shutting_down = False

    install_error_handlers(app)
    for router in (users.router, videos.content, videos.router, staff.router, health.router):
        app.include_router(router)

    # Outermost last: the request id wraps everything, CORS answers preflights before CSRF.
    app.add_middleware(CsrfMiddleware, settings=settings)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.allowed_origins,
        allow_credentials=True,
        allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
        allow_headers=["Content-Type", "X-Retry", "X-Request-ID", "Authorization"],
        expose_headers=[
            "X-Request-ID",
            "X-Next-Cursor",
            "Link",
            "Retry-After",
            "X-Videoflix-Quality",
        ],
        max_age=600,
    )
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    return app
