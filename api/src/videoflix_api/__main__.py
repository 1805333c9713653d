"""`python -m videoflix_api serve | migrate | create-staff EMAIL`."""

from __future__ import annotations

import argparse
import getpass
import os

from videoflix_api.config import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="videoflix_api")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the API with uvicorn")
    serve.add_argument("--host", default="0.0.0.0")  # noqa: S104 (a container listens on all)
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    sub.add_parser("migrate", help="apply database migrations")
    staff = sub.add_parser("create-staff", help="create a confirmed staff account")
    staff.add_argument("email")
    args = parser.parse_args(argv)

    settings = Settings()
    if args.command == "migrate":
        from videoflix_core.db.migrate import upgrade

        upgrade(settings.database_url)
    elif args.command == "create-staff":
        from sqlalchemy.orm import Session

        from videoflix_api.main import make_engine
        from videoflix_api.services.accounts import create_user

        password = os.environ.get("VIDEOFLIX_STAFF_PASSWORD") or getpass.getpass("Password: ")
        with Session(make_engine(settings)) as session:
            create_user(session, args.email, password, staff=True)
            session.commit()
    else:
        import uvicorn

        uvicorn.run(
            "videoflix_api.main:create_app",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            # The app decides the client address itself (deps.resolve_client, trusted_proxies).
            proxy_headers=False,
            timeout_graceful_shutdown=25,
            log_config=None,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
