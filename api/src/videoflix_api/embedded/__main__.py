"""Run Videoflix on one machine: `python -m videoflix_api.embedded [--demo] [options]`.

The whole platform on one machine: the API, SQLite (or the given database), local storage served
with range requests, local transcodes, and the web page at `/`.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import sys
from pathlib import Path
from types import FrameType

from videoflix_core.chunks import DEFAULT_CHUNK_SECONDS

from videoflix_api.embedded.app import (
    ADMIN_EMAIL,
    CANONICAL_LOOPBACK,
    DEV_FRONTEND_PORT,
    EmbeddedConfig,
    build,
    canonical_host,
    canonical_url,
    ensure_admin,
    ingest_demo,
    reset_admin_password,
)

log = logging.getLogger("videoflix_api.embedded")

DEFAULT_DATA_DIR = ".data/embedded"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m videoflix_api.embedded",
        description="Run Videoflix on one machine: API, web page, local storage and transcodes.",
    )
    parser.add_argument("--demo", action="store_true", help="ingest a generated sample video")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="listen address (default 127.0.0.1); the server is opened as http://127.0.0.1:PORT "
        "and http://localhost:PORT redirects there",
    )
    parser.add_argument("--port", type=int, default=8000, help="listen port (default 8000)")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("VIDEOFLIX_DATA_DIR", DEFAULT_DATA_DIR)),
        help=f"database, media and state (default ./{DEFAULT_DATA_DIR} or $VIDEOFLIX_DATA_DIR)",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("VIDEOFLIX_DATABASE_URL"),
        help="SQLAlchemy URL, e.g. postgresql+psycopg://… (default: SQLite in the data folder)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="transcoder steps at once (default: one per CPU core)",
    )
    parser.add_argument(
        "--chunk-seconds",
        type=float,
        # A string default goes through `type` too: a bad variable is refused like the flag.
        default=os.environ.get("VIDEOFLIX_CHUNK_SECONDS", "").strip() or str(DEFAULT_CHUNK_SECONDS),
        help="encode a long constant-rate source in chunks of about this many seconds, run "
        f"in parallel under --workers (0: off; default {DEFAULT_CHUNK_SECONDS} or "
        "$VIDEOFLIX_CHUNK_SECONDS)",
    )
    parser.add_argument(
        "--frontend-url",
        default=None,
        help="a separately running frontend (e.g. http://127.0.0.1:4200): allowed by CORS, e-mail "
        "links point there (default: this server's own page); open it under the same host name "
        "as this server (localhost is rewritten to 127.0.0.1), or its sign-in cookies are not sent",
    )
    parser.add_argument("--smtp-host", help="send mail through this SMTP server (default: log it)")
    parser.add_argument("--smtp-port", type=int, default=25)
    parser.add_argument(
        "--reset-admin-password",
        action="store_true",
        help="give the dev admin account a new password (printed once) and end its sessions",
    )
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    if args.workers is not None and args.workers < 1:
        parser.error("--workers must be at least 1")
    if not (math.isfinite(args.chunk_seconds) and args.chunk_seconds >= 0):
        parser.error("--chunk-seconds must be 0 (off) or positive")
    if not 0 < args.port < 65536:
        parser.error("--port must be between 1 and 65535")
    return args


def _say(text: str) -> None:
    # The CLI's own output (the one-time password must reach the terminal, not only the log).
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def host_name_notice(config: EmbeddedConfig) -> str:
    """What to open, and why the host name matters (cookies are kept per host name)."""
    host = canonical_host(config.host)
    frontend = (
        canonical_url(config.frontend_url)
        if config.frontend_url
        else f"http://{host}:{DEV_FRONTEND_PORT}"
    )
    notice = (
        f"Open {config.public_url}/ and a separate frontend ({frontend}) under the same host name, "
        f"{host}: sign-in cookies belong to one host name, a page opened under another is signed "
        "out."
    )
    if host == CANONICAL_LOOPBACK:
        notice += f" http://localhost:{config.port}/ redirects to {config.public_url}/."
    return notice


def _exit_on_signal(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = EmbeddedConfig(
        data_dir=args.data_dir.resolve(),
        host=args.host,
        port=args.port,
        database_url=args.database_url,
        max_parallel=args.workers,
        chunk_seconds=args.chunk_seconds,
        frontend_url=args.frontend_url.rstrip("/") if args.frontend_url else None,
        extra_cors_origins=[args.frontend_url.rstrip("/")] if args.frontend_url else [],
        smtp_host=args.smtp_host,
        smtp_port=args.smtp_port,
        log_level=args.log_level,
    )
    embedded = build(config)
    if args.reset_admin_password:
        password: str | None = reset_admin_password(embedded.engine)
    else:
        password = ensure_admin(embedded.engine)
    url = config.public_url + "/"
    _say(f"Videoflix (embedded) on {url}  -  API docs: {url}docs  -  data: {config.data_dir}")
    _say(host_name_notice(config))
    if password is not None:
        what = "New password of" if args.reset_admin_password else "Created"
        _say(f"{what} the dev admin account (shown only this once): {ADMIN_EMAIL} {password}")
    # uvicorn re-raises SIGTERM after its graceful shutdown; its default action would end the
    # process before `finally` stops the transcoder subprocesses, so exit through Python instead.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    embedded.dispatcher.start(resume=True)
    try:
        if args.demo:
            video_id = ingest_demo(embedded)
            if video_id is not None:
                log.info("Ingested the demo video", extra={"video_id": video_id})
        import uvicorn

        uvicorn.run(
            embedded.app,
            host=args.host,
            port=args.port,
            log_config=None,
            timeout_graceful_shutdown=5,
        )
    finally:
        embedded.dispatcher.stop()
        embedded.engine.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
