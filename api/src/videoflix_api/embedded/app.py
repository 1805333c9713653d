"""Assembly of the embedded platform: settings, SQLite, local storage, local dispatcher, the app.

Everything the cluster mode gets from Kubernetes and S3 is replaced here and injected into the very
same `create_app`; the routes, services and pure status functions are shared unchanged.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send
from videoflix_core.chunks import DEFAULT_CHUNK_SECONDS
from videoflix_core.db import User, Video
from videoflix_core.db.migrate import upgrade
from videoflix_core.storage import source_key

from videoflix_api import security
from videoflix_api.config import Settings
from videoflix_api.embedded.dispatcher import LocalDispatcher
from videoflix_api.embedded.media import RequestBaseUrlMiddleware, UrlSigner, media_router
from videoflix_api.embedded.sample import make_sample_video
from videoflix_api.embedded.storage import LocalStorage
from videoflix_api.main import create_app, make_engine
from videoflix_api.services import accounts
from videoflix_api.services import videos as video_service
from videoflix_api.web import install_web

log = logging.getLogger(__name__)

ADMIN_EMAIL = "admin@videoflix.local"
DEMO_TITLE = "Test pattern (demo)"
_SECRET_FILE = "secret_key"  # noqa: S105 (a file name, not a secret)


@dataclass
class EmbeddedConfig:
    """The few choices of the embedded mode (the CLI's flags)."""

    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8000
    database_url: str | None = None
    max_parallel: int | None = None
    # > 0: long constant-rate sources are encoded in chunks of about this many seconds, as the
    # operator's VIDEOFLIX_CHUNK_SECONDS (the same measured default); 0: off, one process per
    # rendition.
    chunk_seconds: float = float(DEFAULT_CHUNK_SECONDS)
    # E-mail links point here; None: this server's own page (`--frontend-url` for the Angular app).
    frontend_url: str | None = None
    smtp_host: str | None = None
    smtp_port: int = 25
    log_level: str = "INFO"
    extra_cors_origins: list[str] = field(default_factory=list)

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'videoflix.sqlite3'}"

    @property
    def public_url(self) -> str:
        """The URL to open (no trailing slash), under the one canonical host name."""
        return f"http://{canonical_host(self.host)}:{self.port}"


# Sign-in cookies (SameSite=Lax, no Domain) belong to one host name: a page at
# http://localhost:8000 does not send the cookies of http://127.0.0.1:8000, and a frontend on
# localhost:4200 is another site than an API on 127.0.0.1:8000. So the embedded mode uses one host
# name everywhere (the printed URL, CORS, e-mail and media links) and redirects the others.
CANONICAL_LOOPBACK = "127.0.0.1"
LOOPBACK_ALIASES = frozenset({"localhost", "localhost.", "127.0.0.1", "::1", "[::1]"})
# Listening on every interface: this machine's own browser still reaches it via loopback.
_WILDCARDS = frozenset({"0.0.0.0", "::", "[::]", ""})  # noqa: S104 (names, not a bind)


def canonical_host(host: str) -> str:
    """The host name the embedded server is opened under, for a listen address `host`."""
    name = host.strip().lower()
    return CANONICAL_LOOPBACK if name in LOOPBACK_ALIASES | _WILDCARDS else name


def canonical_url(url: str) -> str:
    """`url` with a loopback alias (localhost, ::1) replaced by the canonical loopback name."""
    parts = urlsplit(url)
    if (parts.hostname or "") not in LOOPBACK_ALIASES - {CANONICAL_LOOPBACK}:
        return url
    netloc = CANONICAL_LOOPBACK + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def redirect_target(host_header: str, path: str, query: str, canonical: str) -> str | None:
    """Where a request that arrived under `host_header` must go, or None when it may stay: one
    under a loopback alias of the canonical loopback host goes to `canonical` (scheme://host:port)."""
    name = host_header.rsplit(":", 1)[0] if not host_header.endswith("]") else host_header
    name = name.lower()
    own = urlsplit(canonical)
    if own.hostname != CANONICAL_LOOPBACK or name not in LOOPBACK_ALIASES - {CANONICAL_LOOPBACK}:
        return None
    return f"{canonical}{path}" + (f"?{query}" if query else "")


class CanonicalHostMiddleware:
    """Redirects (308, keeping method and body) a request under another loopback name to the
    canonical one, where the browser holds the sign-in cookies."""

    def __init__(self, app: ASGIApp, canonical: str) -> None:
        self.app = app
        self.canonical = canonical

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = Headers(scope=scope).get("host", "")
            target = redirect_target(
                host,
                scope["path"],
                scope.get("query_string", b"").decode("latin-1"),
                self.canonical,
            )
            if target is not None:
                await RedirectResponse(target, status_code=308)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class LogMailer:
    """Mails of a dev machine go to the log, so a confirmation link is one copy & paste away."""

    def send(self, message: EmailMessage) -> None:
        body = message.get_body(("plain",))
        text = body.get_content() if body is not None else ""
        log.info(
            "Mail (not sent, embedded mode) to %s: %s\n%s", message["To"], message["Subject"], text
        )


def load_secret(data_dir: Path) -> str:
    """The instance's signing secret: generated once, kept private in the data folder, so logins
    and signed media URLs survive a restart."""
    path = data_dir / _SECRET_FILE
    if path.exists():
        return path.read_text().strip()
    secret = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret)
    return secret


# The Angular dev server's port: allowed by CORS (under the canonical host name only, see
# `canonical_host`) so `ng serve` works against this backend.
DEV_FRONTEND_PORT = 4200


def embedded_settings(config: EmbeddedConfig, secret: str) -> Settings:
    own = config.public_url
    dev_frontend = f"http://{canonical_host(config.host)}:{DEV_FRONTEND_PORT}"
    return Settings(
        # Plain HTTP on a developer machine: dev mode (refused defaults are lifted) and non-Secure
        # cookies, which browsers would otherwise drop on http://127.0.0.1.
        dev_mode=True,
        secret_key=secret,
        database_url=config.resolved_database_url,
        dispatcher="local",
        cookie_secure=False,
        cookie_samesite="lax",
        frontend_url=canonical_url(config.frontend_url) if config.frontend_url else own,
        cors_origins=[own, dev_frontend, *map(canonical_url, config.extra_cors_origins)],
        smtp_host=config.smtp_host or "localhost",
        smtp_port=config.smtp_port,
        log_level=config.log_level,
        log_json=False,
    )


@dataclass
class Embedded:
    """The running parts; `app` is served by uvicorn, `dispatcher` runs beside it."""

    config: EmbeddedConfig
    settings: Settings
    engine: Engine
    storage: LocalStorage
    dispatcher: LocalDispatcher
    app: FastAPI


def build(config: EmbeddedConfig) -> Embedded:
    """Prepare the data folder and database and build the app (nothing runs yet)."""
    config.data_dir.mkdir(parents=True, exist_ok=True)
    secret = load_secret(config.data_dir)
    settings = embedded_settings(config, secret)
    upgrade(settings.database_url)
    engine = make_engine(settings)
    # A key of its own for media URLs (derived, so one secret file is enough to keep).
    media_secret = secrets_derive(secret, "media-urls")
    storage = LocalStorage(config.data_dir / "media", UrlSigner(media_secret, config.public_url))
    dispatcher = LocalDispatcher(
        storage,
        engine,
        config.data_dir / "transcodes",
        max_parallel=config.max_parallel,
        chunk_seconds=config.chunk_seconds,
    )
    mailer = None if config.smtp_host else LogMailer()
    app = create_app(settings, storage=storage, dispatcher=dispatcher, mailer=mailer)
    app.include_router(media_router(storage.root, storage.signer))
    app.add_middleware(RequestBaseUrlMiddleware)
    # Outermost: nothing else runs for a request that is only redirected.
    app.add_middleware(CanonicalHostMiddleware, canonical=config.public_url)
    install_web(app)
    return Embedded(config, settings, engine, storage, dispatcher, app)


def secrets_derive(secret: str, purpose: str) -> bytes:
    return hmac.new(secret.encode(), purpose.encode(), hashlib.sha256).digest()


def ensure_admin(engine: Engine, email: str = ADMIN_EMAIL) -> str | None:
    """Create the dev staff account when no staff account exists; its password (shown once), or
    None when one exists already."""
    with Session(engine) as session:
        if session.scalar(select(User.id).where(User.is_staff.is_(True)).limit(1)) is not None:
            return None
        password = secrets.token_urlsafe(12)
        accounts.create_user(session, email, password, staff=True)
        session.commit()
        return password


def reset_admin_password(engine: Engine, email: str = ADMIN_EMAIL) -> str:
    """A new password for the dev admin account (created if missing, staff either way); its
    sessions end. For the developer who lost the password printed on the first start."""
    password = secrets.token_urlsafe(12)
    with Session(engine) as session:
        user = accounts.get_user_by_email(session, email)
        if user is None:
            accounts.create_user(session, email, password, staff=True)
        else:
            user.password_hash = security.hash_password(password)
            user.is_active = user.is_staff = True
            accounts.revoke_all_sessions(session, user.id, datetime.now(UTC), "password_reset")
        session.commit()
    return password


def ingest_demo(embedded: Embedded, seconds: float = 10.0) -> int | None:
    """Add the generated sample video (once) and hand it to the dispatcher; its id, or None when
    it is there already."""
    with Session(embedded.engine, expire_on_commit=False) as session:
        existing = session.scalar(select(Video.id).where(Video.title == DEMO_TITLE).limit(1))
        if existing is not None:
            return None
        video = video_service.create_video(
            session,
            title=DEMO_TITLE,
            description="A test pattern with a clock and a 440 Hz tone, made by ffmpeg.",
            category="Demo",
            created_by=None,
        )
        session.commit()
        key = source_key(video.id, "test-pattern.mp4")
        path = make_sample_video(embedded.storage.path(key), seconds=seconds)
        video_service.set_source(
            session, embedded.storage, embedded.dispatcher, video, key, path.stat().st_size
        )
        return video.id
