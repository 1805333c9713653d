"""SQLAlchemy 2 models. They run on PostgreSQL (production, tests) and SQLite (embedded mode).

Schema changes always come with an Alembic migration in `migrations/versions/`; a test compares the
models with the migrated schema so the two never drift apart.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from videoflix_core.states import ProcessingState

# Deterministic constraint names, so migrations can refer to them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend.

    SQLite stores no offset and hands back naive values; comparing those with aware ones raises,
    so values are normalised to aware UTC on the way in and out.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are ambiguous; pass an aware UTC datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# JSONB on PostgreSQL (indexable, compact), plain JSON text elsewhere.
JSONType = JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class TokenPurpose(StrEnum):
    CONFIRM = "confirm"
    RESET = "reset"


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Stored normalised (trimmed, lower case) so uniqueness is case-insensitive on every backend.
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(Boolean, default=False)
    is_staff: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class RefreshFamily(Base):
    """One login session: every refresh token rotated from one login shares the family.

    Presenting an already-used token of a family means it was stolen (or replayed), so the whole
    family is revoked and the session ends for both parties.
    """

    __tablename__ = "refresh_families"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    remember: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)


class RefreshToken(Base):
    __tablename__ = "refresh_tokens"

    jti: Mapped[str] = mapped_column(String(36), primary_key=True)
    family_id: Mapped[str] = mapped_column(
        ForeignKey("refresh_families.id", ondelete="CASCADE"), index=True
    )
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class SingleUseToken(Base):
    """E-mail confirmation and password reset tokens. Only a SHA-256 of the token is stored."""

    __tablename__ = "single_use_tokens"
    __table_args__ = (CheckConstraint("purpose IN ('confirm', 'reset')", name="purpose"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    purpose: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # A confirmation token carries the password hash of the registration that asked for it, so
    # confirming a link activates that registration's password, not an earlier registrant's.
    password_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)


_STATES = ", ".join(f"'{s.value}'" for s in ProcessingState)


class Video(Base):
    """One video and its transcode outcome.

    The operator (and the embedded dispatcher) write the outcome columns — processing_state,
    processing_error, converted_files, thumbnail keys, duration_seconds, progress — through
    `videoflix_core.outcome`; `transcode_generation` is bumped by the API whenever the source is
    replaced or a transcode retried, so a late result of an older generation can be ignored.
    """

    __tablename__ = "videos"
    __table_args__ = (
        CheckConstraint(f"processing_state IN ({_STATES})", name="processing_state"),
        CheckConstraint("progress >= 0 AND progress <= 100", name="progress"),
        # Keyset pagination walks (created_at DESC, id DESC), optionally within a category/state.
        Index("ix_videos_created_id", "created_at", "id"),
        Index("ix_videos_category_created_id", "category", "created_at", "id"),
        Index("ix_videos_state_created_id", "processing_state", "created_at", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    category: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )

    source_key: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    source_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # A presigned multipart upload in flight (S3 upload id and its key), if any.
    upload_id: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    upload_key: Mapped[str | None] = mapped_column(String(1024), nullable=True)

    processing_state: Mapped[str] = mapped_column(String(16), default=ProcessingState.PENDING.value)
    processing_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # rendition name -> {width, height, bitrate, bytes, durationSeconds, file, playlist}
    converted_files: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    thumbnail_key: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    sprite_key: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    storyboard_key: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    duration_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    progress: Mapped[int] = mapped_column(Integer, default=0)
    transcode_generation: Mapped[int] = mapped_column(Integer, default=0)
    # The outbox of the hand-over to the pipeline: set in the transaction that commits a new
    # generation, cleared once its CR exists. A crash between the commit and the CR create leaves
    # it set, and the API's sweeper hands the row over later (`videoflix_api.services.outbox`).
    dispatch_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, index=True)


class Favorite(Base):
    __tablename__ = "favorites"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    video_id: Mapped[int] = mapped_column(
        ForeignKey("videos.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RateLimitBucket(Base):
    """One fixed rate-limit window per key (e.g. `login:203.0.113.7`), shared by every replica.

    The API increments `hits` with one atomic upsert, so concurrent replicas never lose a hit;
    a window that has reached `resets_at` starts over on the next hit, and expired rows are
    deleted opportunistically (`videoflix_api.ratelimit`).
    """

    __tablename__ = "rate_limit_buckets"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    resets_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    hits: Mapped[int] = mapped_column(Integer)
