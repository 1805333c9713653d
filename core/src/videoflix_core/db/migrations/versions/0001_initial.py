"""Initial schema: users, refresh token families, single-use tokens, videos, favorites.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("is_staff", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("email", name=op.f("uq_users_email")),
    )
    op.create_table(
        "refresh_families",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("remember", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_reason", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_refresh_families_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refresh_families")),
    )
    op.create_index(
        op.f("ix_refresh_families_user_id"), "refresh_families", ["user_id"], unique=False
    )

    op.create_table(
        "single_use_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "purpose IN ('confirm', 'reset')", name=op.f("ck_single_use_tokens_purpose")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_single_use_tokens_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_single_use_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_single_use_tokens_token_hash")),
    )
    op.create_index(
        op.f("ix_single_use_tokens_user_id"), "single_use_tokens", ["user_id"], unique=False
    )

    op.create_table(
        "videos",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("category", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("source_key", sa.String(length=1024), nullable=True),
        sa.Column("source_bytes", sa.BigInteger(), nullable=True),
        sa.Column("upload_id", sa.String(length=1024), nullable=True),
        sa.Column("upload_key", sa.String(length=1024), nullable=True),
        sa.Column("processing_state", sa.String(length=16), nullable=False),
        sa.Column("processing_error", sa.Text(), nullable=True),
        sa.Column(
            "converted_files",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("thumbnail_key", sa.String(length=1024), nullable=True),
        sa.Column("sprite_key", sa.String(length=1024), nullable=True),
        sa.Column("storyboard_key", sa.String(length=1024), nullable=True),
        sa.Column("duration_seconds", sa.Float(), nullable=True),
        sa.Column("progress", sa.Integer(), nullable=False),
        sa.Column("transcode_generation", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "processing_state IN ('pending', 'processing', 'ready', 'error')",
            name=op.f("ck_videos_processing_state"),
        ),
        sa.CheckConstraint("progress >= 0 AND progress <= 100", name=op.f("ck_videos_progress")),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["users.id"],
            name=op.f("fk_videos_created_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_videos")),
    )
    op.create_index(
        "ix_videos_category_created_id", "videos", ["category", "created_at", "id"], unique=False
    )
    op.create_index("ix_videos_created_id", "videos", ["created_at", "id"], unique=False)
    op.create_index(
        "ix_videos_state_created_id",
        "videos",
        ["processing_state", "created_at", "id"],
        unique=False,
    )

    op.create_table(
        "favorites",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("video_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_favorites_user_id_users"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["video_id"],
            ["videos.id"],
            name=op.f("fk_favorites_video_id_videos"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", "video_id", name=op.f("pk_favorites")),
    )
    op.create_index(op.f("ix_favorites_video_id"), "favorites", ["video_id"], unique=False)

    op.create_table(
        "refresh_tokens",
        sa.Column("jti", sa.String(length=36), nullable=False),
        sa.Column("family_id", sa.String(length=36), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["family_id"],
            ["refresh_families.id"],
            name=op.f("fk_refresh_tokens_family_id_refresh_families"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("jti", name=op.f("pk_refresh_tokens")),
    )
    op.create_index(
        op.f("ix_refresh_tokens_family_id"), "refresh_tokens", ["family_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_refresh_tokens_family_id"), table_name="refresh_tokens")

    op.drop_table("refresh_tokens")
    op.drop_index(op.f("ix_favorites_video_id"), table_name="favorites")

    op.drop_table("favorites")
    op.drop_index("ix_videos_state_created_id", table_name="videos")
    op.drop_index("ix_videos_created_id", table_name="videos")
    op.drop_index("ix_videos_category_created_id", table_name="videos")

    op.drop_table("videos")
    op.drop_index(op.f("ix_single_use_tokens_user_id"), table_name="single_use_tokens")

    op.drop_table("single_use_tokens")
    op.drop_index(op.f("ix_refresh_families_user_id"), table_name="refresh_families")

    op.drop_table("refresh_families")
    op.drop_table("users")
