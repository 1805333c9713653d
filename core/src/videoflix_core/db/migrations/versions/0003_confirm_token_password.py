"""Confirmation tokens carry the password hash of their own registration.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # batch mode: SQLite (the embedded mode) cannot ALTER a table in place.
    with op.batch_alter_table("single_use_tokens") as batch:
        batch.add_column(sa.Column("password_hash", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("single_use_tokens") as batch:
        batch.drop_column("password_hash")
