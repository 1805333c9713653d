"""Alembic environment: runs online against the connection handed in by `migrate.upgrade`."""

from alembic import context
from sqlalchemy import Connection

from videoflix_core.db.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things in place; batch mode rebuilds tables there.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("use videoflix_core.db.migrate.upgrade(database_url)")
_run(connection)
