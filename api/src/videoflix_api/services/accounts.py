"""Accounts: registration, confirmation, login sessions with rotating refresh tokens, resets."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import Any

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import (
    Connection,
    CursorResult,
    Select,
    bindparam,
    literal_column,
    select,
    true,
    update,
)
from sqlalchemy.orm import Session
from videoflix_core.db import (
    Favorite,
    RefreshFamily,
    RefreshToken,
    SingleUseToken,
    TokenPurpose,
    User,
)

from videoflix_api import security
from videoflix_api.config import Settings


def normalize_email(email: str) -> str:
    return email.strip().lower()


def email_problems(email: str) -> list[str]:
    try:
        validate_email(email, check_deliverability=False)
    except EmailNotValidError:
        return ["Enter a valid email address."]
    return []


def registration_problems(email: str, password: str, confirm_password: str) -> dict[str, list[str]]:
    """Field errors of a registration form (empty when it is acceptable)."""
    errors: dict[str, list[str]] = {}
    if problems := email_problems(email):
        errors["email"] = problems
    if problems := security.password_problems(password, email):
        errors["password"] = problems
    if password != confirm_password:
        errors["confirm_password"] = ["Passwords do not match."]
    return errors


def get_user_by_email(session: Session, email: str) -> User | None:
    return session.scalar(select(User).where(User.email == normalize_email(email)))


def email_exists(session: Session, email: str) -> bool:
    return get_user_by_email(session, email) is not None


@dataclass(frozen=True, slots=True)
class Viewer:
    """A signed-in account as read-only routes need it: loading the `User` entity cost more
    than the query behind it."""

    id: int
    is_staff: bool


# Built once: building and compiling the statement per request cost more than running it.
_ACTIVE_VIEWER = select(User.id, User.is_staff).where(
    User.id == bindparam("user_id"), User.is_active.is_(True)
)


def active_viewer(conn: Connection, user_id: int) -> Viewer | None:
    """The account `user_id` when it exists and is active, else None (refused as signed out)."""
    row = conn.execute(_ACTIVE_VIEWER, {"user_id": user_id}).first()
    return None if row is None else Viewer(row[0], bool(row[1]))


@lru_cache(maxsize=32)
def _with_active_viewer(query: Select[Any]) -> Select[Any]:
    """`_ACTIVE_VIEWER` outer-joined with `query` (one row at most): no row when the account is
    not active, else the viewer's columns, `query`'s, and `found` (NULL when `query` has no
    row). Plain subqueries joined ON true: PostgreSQL and SQLite both plan it as two lookups.
    Built once per query."""
    viewer = _ACTIVE_VIEWER.subquery("viewer")
    data = query.add_columns(literal_column("1").label("found")).subquery("data")
    return select(viewer, data).select_from(viewer.outerjoin(data, true()))


def checked_first(
    conn: Connection, user_id: int, query: Select[Any], params: dict[str, Any]
) -> tuple[Viewer, tuple[Any, ...] | None] | None:
    """`active_viewer` and the first row of `query` (None when it has none) in one statement, so
    one round trip; None when the account is not active."""
    row = conn.execute(_with_active_viewer(query), {**params, "user_id": user_id}).first()
    if row is None:
        return None
    values = tuple(row)
    return Viewer(values[0], bool(values[1])), (None if values[-1] is None else values[2:-1])


class Registration(StrEnum):
    CREATED = "created"
    PENDING = "pending"  # exists, not confirmed yet: send the confirmation again
    EXISTS = "exists"  # exists and active: tell the owner, reveal nothing to the caller


@dataclass(frozen=True)
class Registered:
    user: User
    outcome: Registration
    # This registration's own password hash: its confirmation link carries it (see `confirm`).
    password_hash: str


def register(session: Session, email: str, password: str) -> Registered:
    """Record a registration. Hashes the password whatever the outcome: the same work (and time)
    whether or not the address has an account."""
    password_hash = security.hash_password(password)
    existing = get_user_by_email(session, email)
    if existing is not None:
        outcome = Registration.EXISTS if existing.is_active else Registration.PENDING
        return Registered(existing, outcome, password_hash)
    user = User(email=normalize_email(email), password_hash=password_hash)
    session.add(user)
    session.flush()
    return Registered(user, Registration.CREATED, password_hash)


def create_user(
    session: Session, email: str, password: str, *, active: bool = True, staff: bool = False
) -> User:
    """A user created by an operator (e.g. the first staff account), confirmed right away."""
    user = User(
        email=normalize_email(email),
        password_hash=security.hash_password(password),
        is_active=active,
        is_staff=staff,
    )
    session.add(user)
    session.flush()
    return user


def issue_single_use_token(
    session: Session,
    user: User,
    purpose: TokenPurpose,
    lifetime: timedelta,
    now: datetime,
    *,
    password_hash: str | None = None,
) -> str:
    """A fresh token for `purpose`; earlier unused ones of the same purpose stop working.

    A confirmation token carries `password_hash`, the password of the registration it confirms.
    """
    # Superseded tokens end now, unconsumed (expiry = use time), see `was_consumed`.
    session.execute(
        update(SingleUseToken)
        .where(
            SingleUseToken.user_id == user.id,
            SingleUseToken.purpose == purpose.value,
            SingleUseToken.used_at.is_(None),
        )
        .values(used_at=now, expires_at=now)
    )
    token, digest = security.new_single_use_token()
    session.add(
        SingleUseToken(
            user_id=user.id,
            purpose=purpose.value,
            token_hash=digest,
            created_at=now,
            expires_at=now + lifetime,
            password_hash=password_hash,
        )
    )
    session.flush()
    return token


@dataclass(frozen=True)
class Consumed:
    user: User
    password_hash: str | None  # the registration's password a confirmation token carries


def consume_single_use_token(
    session: Session, uid: int, token: str, purpose: TokenPurpose, now: datetime
) -> Consumed | None:
    """The token's user when `token` is valid for `uid`, marking it used (atomically), else None."""
    row = session.execute(
        update(SingleUseToken)
        .where(
            SingleUseToken.token_hash == security.hash_single_use_token(token),
            SingleUseToken.user_id == uid,
            SingleUseToken.purpose == purpose.value,
            SingleUseToken.used_at.is_(None),
            SingleUseToken.expires_at > now,
        )
        .values(used_at=now)
        .returning(SingleUseToken.password_hash)
    ).first()
    if row is None:
        return None
    user = session.get(User, uid)
    return Consumed(user, row.password_hash) if user is not None else None


def was_consumed(token: SingleUseToken) -> bool:
    """Whether the token was used by following its link, not ended by a newer one: consuming
    needs an unexpired token, superseding sets the expiry to the moment it ends."""
    return token.used_at is not None and token.used_at < token.expires_at


class Confirmation(StrEnum):
    ACTIVATED = "activated"
    ALREADY = "already"  # the link was opened before (e.g. by a mail scanner): still a success
    INVALID = "invalid"


def confirm(session: Session, uid: int, token: str, now: datetime) -> Confirmation:
    """Activate the account with the password of the registration this link was mailed for.

    Only the newest registration's link is alive (issuing a link ends the earlier ones), so an
    attacker who registered the address first cannot have their password activated by the
    owner confirming the owner's own registration. An active account is never changed here: its
    links are all used by then, and registering it again only mails its owner.
    """
    consumed = consume_single_use_token(session, uid, token, TokenPurpose.CONFIRM, now)
    if consumed is not None:
        if consumed.password_hash is not None:  # None: a link issued before tokens carried it
            consumed.user.password_hash = consumed.password_hash
        consumed.user.is_active = True
        return Confirmation.ACTIVATED
    used = session.scalar(
        select(SingleUseToken).where(
            SingleUseToken.token_hash == security.hash_single_use_token(token),
            SingleUseToken.user_id == uid,
            SingleUseToken.purpose == TokenPurpose.CONFIRM.value,
        )
    )
    # A link opened again (a mail scanner was first) is still a success; a superseded one is not.
    owner = session.get(User, uid) if used is not None and was_consumed(used) else None
    if owner is not None and owner.is_active:
        return Confirmation.ALREADY
    return Confirmation.INVALID


def authenticate(session: Session, email: str, password: str, now: datetime) -> User | None:
    """The user when the password matches (active or not), else None; constant work either way."""
    user = get_user_by_email(session, email)
    if not security.verify_password(user.password_hash if user else None, password):
        return None
    assert user is not None
    if security.password_needs_rehash(user.password_hash):
        user.password_hash = security.hash_password(password)
    return user


@dataclass(frozen=True)
class IssuedTokens:
    access: str
    refresh: str
    refresh_max_age: int
    access_max_age: int


# Names a refresh token's successor after the token itself, so a request that arrives while the
# token is being rotated can find the successor and re-sign it byte for byte (HS256 is
# deterministic) instead of minting a second one. Nothing new is stored for it.
_SUCCESSOR_NAMESPACE = uuid.UUID("5b0f5c0e-6d0a-4c57-9d53-7a8a3f0e2c11")


def successor_jti(jti: str) -> str:
    """The jti of the token that replaces refresh token `jti` when it is rotated."""
    return str(uuid.uuid5(_SUCCESSOR_NAMESPACE, jti))


def within_reuse_grace(used_at: datetime, now: datetime, grace_seconds: int) -> bool:
    """Whether presenting an already rotated refresh token again is a parallel refresh (answered
    with the same successor) rather than a replay (which ends the session)."""
    return now - used_at <= timedelta(seconds=grace_seconds)


def _refresh_seconds(settings: Settings, family: RefreshFamily) -> int:
    return settings.refresh_remember_seconds if family.remember else settings.refresh_token_seconds


def _issue_refresh(
    session: Session,
    settings: Settings,
    family: RefreshFamily,
    user_id: int,
    now: datetime,
    jti: str | None = None,
) -> tuple[str, int]:
    seconds = _refresh_seconds(settings, family)
    token, claims = security.create_token(
        settings.secret_key.get_secret_value(),
        user_id=user_id,
        token_type="refresh",  # noqa: S106
        now=now,
        lifetime=timedelta(seconds=seconds),
        family=family.id,
        jti=jti,
    )
    session.add(
        RefreshToken(
            jti=claims.jti, family_id=family.id, issued_at=now, expires_at=claims.expires_at
        )
    )
    return token, seconds


def _resign_refresh(settings: Settings, row: RefreshToken, user_id: int) -> str:
    """The exact token that was issued for `row` (same claims, same signature)."""
    token, _ = security.create_token(
        settings.secret_key.get_secret_value(),
        user_id=user_id,
        token_type="refresh",  # noqa: S106
        now=row.issued_at,
        lifetime=row.expires_at - row.issued_at,
        family=row.family_id,
        jti=row.jti,
    )
    return token


def _issue_access(settings: Settings, user_id: int, now: datetime) -> str:
    token, _ = security.create_token(
        settings.secret_key.get_secret_value(),
        user_id=user_id,
        token_type="access",  # noqa: S106
        now=now,
        lifetime=timedelta(seconds=settings.access_token_seconds),
    )
    return token


def start_session(
    session: Session, settings: Settings, user: User, remember: bool, now: datetime
) -> IssuedTokens:
    family = RefreshFamily(id=str(uuid.uuid4()), user_id=user.id, remember=remember, created_at=now)
    session.add(family)
    session.flush()
    refresh, max_age = _issue_refresh(session, settings, family, user.id, now)
    user.last_login_at = now
    return IssuedTokens(
        _issue_access(settings, user.id, now), refresh, max_age, settings.access_token_seconds
    )


class RefreshRefused(Exception):
    """The refresh token cannot be used; `reason` goes to metrics and logs, not to the client."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def rotate(session: Session, settings: Settings, refresh_token: str, now: datetime) -> IssuedTokens:
    """Swap a refresh token for a new pair. A reused token revokes its whole family.

    Race-safe: the token is marked used with one conditional UPDATE, so of two simultaneous
    requests exactly one rotates; on PostgreSQL the other waits on the row lock until the
    winner has committed its successor. The loser, inside the grace window, answers with that
    same successor (the client refreshes once per 401, without sharing an in-flight refresh).

    The revocation is committed here, before raising, because the failing request's transaction
    would otherwise be rolled back and the stolen family would live on.
    """
    try:
        claims = security.decode_token(
            settings.secret_key.get_secret_value(), refresh_token, "refresh", now=now
        )
    except security.InvalidToken as exc:
        raise RefreshRefused("invalid") from exc
    row = session.get(RefreshToken, claims.jti)
    family = session.get(RefreshFamily, row.family_id) if row else None
    if row is None or family is None or family.user_id != claims.user_id:
        raise RefreshRefused("unknown")
    if family.revoked_at is not None:
        raise RefreshRefused("revoked")
    marked = session.execute(
        update(RefreshToken)
        .where(RefreshToken.jti == row.jti, RefreshToken.used_at.is_(None))
        .values(used_at=now)
    )
    assert isinstance(marked, CursorResult)
    if marked.rowcount != 1:
        session.refresh(row)
        session.refresh(family)
        if family.revoked_at is not None:
            raise RefreshRefused("revoked")
        assert row.used_at is not None
        if within_reuse_grace(row.used_at, now, settings.refresh_reuse_grace_seconds):
            return _reissue_successor(session, settings, row, claims.user_id, now)
        family.revoked_at = now
        family.revoked_reason = "reuse"
        session.commit()
        raise RefreshRefused("reuse")
    user = _active_user(session, claims.user_id)
    refresh, max_age = _issue_refresh(
        session, settings, family, user.id, now, jti=successor_jti(row.jti)
    )
    return IssuedTokens(
        _issue_access(settings, user.id, now), refresh, max_age, settings.access_token_seconds
    )


def _active_user(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None or not user.is_active:
        raise RefreshRefused("inactive")
    return user


def _reissue_successor(
    session: Session, settings: Settings, row: RefreshToken, user_id: int, now: datetime
) -> IssuedTokens:
    """The successor the winning request of a parallel refresh issued, for the losing one."""
    successor = session.get(RefreshToken, successor_jti(row.jti))
    if successor is None or successor.used_at is not None:
        # Rotated before successors were named, or already rotated on: nothing to hand out.
        raise RefreshRefused("concurrent")
    user = _active_user(session, user_id)
    remaining = int((successor.expires_at - now).total_seconds())
    if remaining <= 0:
        raise RefreshRefused("concurrent")
    return IssuedTokens(
        _issue_access(settings, user.id, now),
        _resign_refresh(settings, successor, user.id),
        remaining,
        settings.access_token_seconds,
    )


def end_session(session: Session, settings: Settings, refresh_token: str, now: datetime) -> bool:
    """Revoke the family of `refresh_token` (logout); True when a live session ended.

    Needs only the refresh token: the access cookie has often expired by the time a user signs
    out, and the signature proves the token is ours.
    """
    try:
        # An expired refresh token still names its family; logging out must end it anyway.
        claims = security.decode_token(
            settings.secret_key.get_secret_value(),
            refresh_token,
            "refresh",
            now=datetime.fromtimestamp(0, tz=now.tzinfo),
        )
    except security.InvalidToken:
        return False
    if claims.family is None:
        return False
    family = session.get(RefreshFamily, claims.family)
    if family is None or family.user_id != claims.user_id or family.revoked_at is not None:
        return False
    family.revoked_at = now
    family.revoked_reason = "logout"
    return True


def revoke_all_sessions(session: Session, user_id: int, now: datetime, reason: str) -> None:
    session.execute(
        update(RefreshFamily)
        .where(RefreshFamily.user_id == user_id, RefreshFamily.revoked_at.is_(None))
        .values(revoked_at=now, revoked_reason=reason)
    )


def reset_password(
    session: Session, uid: int, token: str, new_password: str, now: datetime
) -> User | None:
    """Set a new password when the reset token is valid; all sessions of the user end."""
    consumed = consume_single_use_token(session, uid, token, TokenPurpose.RESET, now)
    if consumed is None:
        return None
    user = consumed.user
    user.password_hash = security.hash_password(new_password)
    # Following the link proves the mailbox, the same proof a confirmation gives.
    user.is_active = True
    revoke_all_sessions(session, user.id, now, "password-reset")
    return user


def favorite_ids(session: Session, user_id: int) -> list[int]:
    return list(
        session.scalars(
            select(Favorite.video_id).where(Favorite.user_id == user_id).order_by(Favorite.video_id)
        )
    )
