"""The packaged Alembic migrations build the schema the models describe, on both backends."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect
from videoflix_core.db import Base
from videoflix_core.db.migrate import downgrade, upgrade


def _drift(url: str) -> list[object]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


def test_postgres_schema_matches_models(database_url: str) -> None:
    upgrade(database_url)
    assert _drift(database_url) == []
    engine = create_engine(database_url)
    indexes = {ix["name"] for ix in inspect(engine).get_indexes("videos")}
    engine.dispose()
    assert {"ix_videos_created_id", "ix_videos_category_created_id"} <= indexes
    # Reversible, and repeatable.
    downgrade(database_url, "base")
    upgrade(database_url)
    upgrade(database_url)


def test_sqlite_schema_matches_models(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'embedded.db'}"
    upgrade(url)
    assert _drift(url) == []


def test_rate_limit_buckets_migration_round_trip(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        upgrade(database_url, "0001")
        assert "rate_limit_buckets" not in inspect(engine).get_table_names()
        upgrade(database_url)
        tables = inspect(engine).get_table_names()
        assert "rate_limit_buckets" in tables
        indexes = {ix["name"] for ix in inspect(engine).get_indexes("rate_limit_buckets")}
        assert indexes == {"ix_rate_limit_buckets_resets_at"}
        # Down one step removes only the new table; the rest of the schema stays.
        downgrade(database_url, "0001")
        after = set(inspect(engine).get_table_names())
        assert "rate_limit_buckets" not in after and "users" in after
        upgrade(database_url)
        assert "rate_limit_buckets" in inspect(engine).get_table_names()
        assert _drift(database_url) == []
    finally:
        engine.dispose()
