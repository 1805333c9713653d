"""Typed dependencies: settings, session, storage, dispatcher, current user, rate limits."""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from sqlalchemy import Connection, Engine, Select
from sqlalchemy.orm import Session
from videoflix_core.db import User

from videoflix_api import security
from videoflix_api.config import Settings
from videoflix_api.dispatch import Dispatcher, UnavailableDispatcher
from videoflix_api.mail import Mailer
from videoflix_api.observability import Metrics
from videoflix_api.ratelimit import RateLimiter
from videoflix_api.security import TokenClaims
from videoflix_api.services.accounts import Viewer, active_viewer, checked_first
from videoflix_api.services.storage import Storage

log = logging.getLogger(__name__)
_dispatcher_lock = threading.Lock()
ACCESS_COOKIE = "vf_access"
REFRESH_COOKIE = "vf_refresh"


def utcnow() -> datetime:
    return datetime.now(UTC)


# The cheap dependencies are async: a sync one costs a thread-pool hop on every request.
async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_session(request: Request) -> Iterator[Session]:
    """One transaction per request: committed when the route returns, rolled back when it raises."""
    with request.app.state.sessionmaker() as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


async def get_storage(request: Request) -> Storage:
    storage: Storage = request.app.state.storage
    return storage


async def get_dispatcher(request: Request) -> Dispatcher:
    state = request.app.state
    if state.dispatcher is None:
        with _dispatcher_lock:
            if state.dispatcher is None:
                try:
                    state.dispatcher = state.dispatcher_factory()
                except Exception as exc:
                    # Not cached: the next request tries again (e.g. once the cluster is back).
                    log.warning("Dispatcher unavailable", extra={"error": str(exc)})
                    return UnavailableDispatcher(str(exc))
    dispatcher: Dispatcher = state.dispatcher
    return dispatcher


async def get_mailer(request: Request) -> Mailer:
    mailer: Mailer = request.app.state.mailer
    return mailer


async def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


SettingsDep = Annotated[Settings, Depends(get_settings)]
# scope="function": the commit happens before the response is sent, so a client that sees 2xx
# can rely on the change being stored.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
StorageDep = Annotated[Storage, Depends(get_storage)]
DispatcherDep = Annotated[Dispatcher, Depends(get_dispatcher)]
MailerDep = Annotated[Mailer, Depends(get_mailer)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]


async def base_url(request: Request) -> str:
    """Absolute base URL for links in responses and mails: the configured one (required outside
    dev mode, see config.check_production), the request's own only in dev mode."""
    configured: str | None = request.app.state.settings.public_base_url
    return configured or str(request.base_url).rstrip("/")


BaseUrlDep = Annotated[str, Depends(base_url)]


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


async def get_claims(request: Request, settings: SettingsDep, metrics: MetricsDep) -> TokenClaims:
    """The verified claims of the request's access token, from the `vf_access` cookie (or a
    Bearer header for API clients). Async: checking an HS256 signature is pure CPU, and a sync
    dependency would cost a thread-pool hop on every signed-in request."""
    token = request.cookies.get(ACCESS_COOKIE) or _bearer(request)
    if not token:
        metrics.auth_failures.labels("missing").inc()
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "Authentication credentials were not provided."
        )
    try:
        return security.decode_token(
            settings.secret_key.get_secret_value(), token, "access", now=utcnow()
        )
    except security.InvalidToken as exc:
        metrics.auth_failures.labels("invalid_access").inc()
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "Given token not valid for any token type"
        ) from exc


ClaimsDep = Annotated[TokenClaims, Depends(get_claims)]


def _inactive(metrics: Metrics) -> HTTPException:
    metrics.auth_failures.labels("inactive").inc()
    return HTTPException(status.HTTP_401_UNAUTHORIZED, "User is inactive or was deleted.")


def get_current_user(claims: ClaimsDep, session: SessionDep, metrics: MetricsDep) -> User:
    """The signed-in user (see `get_claims`), as long as the account exists and is active."""
    user = session.get(User, claims.user_id)
    if user is None or not user.is_active:
        raise _inactive(metrics)
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


async def get_staff_user(user: CurrentUser) -> User:
    if not user.is_staff:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, "You do not have permission to perform this action."
        )
    return user


StaffUser = Annotated[User, Depends(get_staff_user)]


class Reader:
    """Read-only database access on behalf of the signed-in user, for the hot read routes.

    `connect()` checks out one autocommit connection (no BEGIN/COMMIT round trips, no ORM
    session) and first checks that the account exists and is active, as `get_current_user`
    does; `first()` reads one row in the same statement as that check. The only ways to the
    database go through the check. Made by an async dependency
    and used inside the route's one thread-pool call, so a request costs one hop, not one per
    dependency (session open, user, handler, session close).
    """

    def __init__(self, engine: Engine, claims: TokenClaims, metrics: Metrics):
        self._engine = engine
        self._claims = claims
        self._metrics = metrics

    @contextmanager
    def connect(self) -> Iterator[tuple[Connection, Viewer]]:
        with self._engine.connect() as conn:
            viewer = active_viewer(conn, self._claims.user_id)
            if viewer is None:
                raise _inactive(self._metrics)
            yield conn, viewer

    def first(self, query: Select[Any], params: dict[str, Any]) -> tuple[Any, ...] | None:
        """The first row of `query` (None when it has none), read in the same statement as the
        account check (`accounts.checked_first`): one round trip where `connect()` takes two."""
        with self._engine.connect() as conn:
            checked = checked_first(conn, self._claims.user_id, query, params)
        if checked is None:
            raise _inactive(self._metrics)
        return checked[1]


async def get_reader(request: Request, claims: ClaimsDep, metrics: MetricsDep) -> Reader:
    return Reader(request.app.state.read_engine, claims, metrics)


ReaderDep = Annotated[Reader, Depends(get_reader)]


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def resolve_client(peer: str | None, forwarded_for: list[str], trusted: Sequence[Network]) -> str:
    """The client's address: the TCP peer, unless the peer is a trusted proxy.

    Then X-Forwarded-For is read from the right, where each trusted proxy appended the address it
    saw, and the first hop that is not itself a trusted proxy is the client. Anything left of it
    was written by the client and could be anything, so it is never read. With no trusted
    proxies the header is ignored entirely.
    """
    if peer is None:
        return "unknown"
    hops = [hop.strip() for header in forwarded_for for hop in header.split(",") if hop.strip()]
    address = peer
    while hops:
        ip = _ip(address)
        if ip is None or not any(ip in network for network in trusted):
            break
        address = hops.pop()
    return address


def client_address(request: Request) -> str:
    # uvicorn runs with proxy headers off (see __main__ and the chart): the peer it reports is the
    # real TCP peer, and this is the one place that decides whether to look past it.
    settings: Settings = request.app.state.settings
    return resolve_client(
        request.client.host if request.client else None,
        request.headers.getlist("x-forwarded-for"),
        settings.trusted_proxies,
    )


def throttle(
    request: Request, scope: str, key: str, limit: int, window_seconds: int | None = None
) -> None:
    """Count one attempt; 429 with Retry-After (DRF's message) when over the limit. The window
    is `rate_limit_window_seconds` unless given."""
    limiter: RateLimiter = request.app.state.limiter
    settings: Settings = request.app.state.settings
    window = window_seconds or settings.rate_limit_window_seconds
    wait = limiter.hit(f"{scope}:{key}", limit, window)
    if wait is not None:
        request.app.state.metrics.rate_limited.labels(scope).inc()
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"Request was throttled. Expected available in {wait} seconds.",
            headers={"Retry-After": str(wait)},
        )


def unthrottle(request: Request, scope: str, key: str) -> None:
    """Give back the attempt `throttle` counted, when it turned out not to count (a success)."""
    limiter: RateLimiter = request.app.state.limiter
    limiter.refund(f"{scope}:{key}")


def rate_limit(scope: str, setting: str) -> Callable[[Request], None]:
    """A dependency limiting `scope` per client address to the number in settings.`setting`."""

    # Sync on purpose: counting is a database round trip, so FastAPI runs it in the thread pool
    # instead of blocking the event loop.
    def dependency(request: Request) -> None:
        limit = int(getattr(request.app.state.settings, setting))
        throttle(request, scope, client_address(request), limit)

    return dependency
