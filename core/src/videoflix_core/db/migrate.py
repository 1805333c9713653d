"""Apply the packaged Alembic migrations: `upgrade(database_url)`.

The migrations ship inside `videoflix_core`, so the API, the operator and the embedded mode all
migrate the same schema without an alembic.ini on disk.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the database at `database_url` up to `revision` (default: the newest)."""
    engine = create_engine(database_url)
    try:
        with engine.begin() as connection:
            cfg = alembic_config()
            # Passing the connection (not the URL) keeps passwords with '%' away from configparser.
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, revision)
    finally:
        engine.dispose()


def downgrade(database_url: str, revision: str) -> None:
    engine = create_engine(database_url)
    try:
        with engine.begin() as connection:
            cfg = alembic_config()
            cfg.attributes["connection"] = connection
            command.downgrade(cfg, revision)
    finally:
        engine.dispose()


def main() -> None:
    """`python -m videoflix_core.db.migrate [DATABASE_URL]` (default: $VIDEOFLIX_DATABASE_URL)."""
    import os
    import sys

    url = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("VIDEOFLIX_DATABASE_URL", "")
    if not url:
        raise SystemExit("usage: python -m videoflix_core.db.migrate DATABASE_URL")
    upgrade(url)


if __name__ == "__main__":
    main()
