"""Videos record a hand-over to the pipeline that is still owed (the dual-write outbox).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # batch mode: SQLite (the embedded mode) cannot ALTER a table in place.
    with op.batch_alter_table("videos") as batch:
        batch.add_column(sa.Column("dispatch_due_at", sa.DateTime(timezone=True), nullable=True))
        # The sweeper looks up the rows whose hand-over is owed.
        batch.create_index(op.f("ix_videos_dispatch_due_at"), ["dispatch_due_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("videos") as batch:
        batch.drop_index(op.f("ix_videos_dispatch_due_at"))
        batch.drop_column("dispatch_due_at")
