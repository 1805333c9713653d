"""Passwords, tokens and the CSRF origin check: pure functions, no I/O (argon2 runs are bounded
in number, see `configure_hashing`)."""

from __future__ import annotations

import hashlib
import secrets
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal
from urllib.parse import urlsplit

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

TokenType = Literal["access", "refresh"]
ALGORITHM = "HS256"


@dataclass(frozen=True)
class _Hashing:
    hasher: PasswordHasher
    # Verified against when the e-mail is unknown, so a login takes as long either way. Made by
    # the same hasher: verifying costs what the stored hash's own parameters say.
    dummy_hash: str
    # Each argon2 run holds its memory cost (64 MiB by default) until it ends; without a bound,
    # every thread-pool thread could verify at once and the process would outgrow its limit.
    slots: threading.BoundedSemaphore


def _hashing(hasher: PasswordHasher, concurrency: int) -> _Hashing:
    return _Hashing(
        hasher, hasher.hash(secrets.token_urlsafe(16)), threading.BoundedSemaphore(concurrency)
    )


# argon2-cffi's defaults are the RFC 9106 "low memory" profile of argon2id.
_state = _hashing(PasswordHasher(), 4)


def configure_hashing(
    *, concurrency: int, memory_kib: int, time_cost: int, parallelism: int
) -> None:
    """Set the argon2id cost and how many hashes may run at once (from settings, at start-up)."""
    global _state
    hasher = PasswordHasher(memory_cost=memory_kib, time_cost=time_cost, parallelism=parallelism)
    _state = _hashing(hasher, concurrency)


def hash_password(password: str) -> str:
    state = _state
    with state.slots:
        return state.hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    state = _state
    try:
        with state.slots:
            matches = state.hasher.verify(password_hash or state.dummy_hash, password)
        return matches and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def password_needs_rehash(password_hash: str) -> bool:
    return _state.hasher.check_needs_rehash(password_hash)


def password_problems(password: str, email: str | None = None) -> list[str]:
    """Why `password` is refused (empty when acceptable)."""
    problems = []
    if len(password) < 8:
        problems.append("This password is too short. It must contain at least 8 characters.")
    if len(password) > 1024:
        problems.append("This password is too long.")
    if password.isdigit():
        problems.append("This password is entirely numeric.")
    if email and password.strip().lower() == email.strip().lower():
        problems.append("The password is too similar to the email.")
    return problems


@dataclass(frozen=True)
class TokenClaims:
    user_id: int
    type: TokenType
    jti: str
    expires_at: datetime
    family: str | None = None


class InvalidToken(Exception):
    """A token that is malformed, forged, of the wrong type or expired."""


def create_token(
    secret: str,
    *,
    user_id: int,
    token_type: TokenType,
    now: datetime,
    lifetime: timedelta,
    family: str | None = None,
    jti: str | None = None,
) -> tuple[str, TokenClaims]:
    """A signed token; the same arguments (including `jti`) give the same bytes (HS256)."""
    claims = TokenClaims(
        user_id=user_id,
        type=token_type,
        jti=jti or str(uuid.uuid4()),
        expires_at=now + lifetime,
        family=family,
    )
    payload: dict[str, object] = {
        "sub": str(user_id),
        "typ": token_type,
        "jti": claims.jti,
        "iat": int(now.timestamp()),
        "exp": int(claims.expires_at.timestamp()),
    }
    if family:
        payload["fam"] = family
    return jwt.encode(payload, secret, algorithm=ALGORITHM), claims


def decode_token(secret: str, token: str, expected: TokenType, *, now: datetime) -> TokenClaims:
    try:
        payload = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            options={"require": ["sub", "typ", "jti", "exp"], "verify_exp": False},
        )
    except jwt.PyJWTError as exc:
        raise InvalidToken(str(exc)) from exc
    if payload.get("typ") != expected:
        raise InvalidToken("wrong token type")
    # pyjwt leaves `exp` unchecked here (verify_exp is off), so its type and range are ours to
    # check: a malformed claim is an invalid token, never an error of the server.
    try:
        expires = int(payload["exp"])
        expires_at = datetime.fromtimestamp(expires, tz=now.tzinfo)
        user_id = int(payload["sub"])
    except (TypeError, ValueError, OverflowError, OSError) as exc:
        raise InvalidToken("bad exp or subject") from exc
    # Expiry is checked against the caller's clock so that tests and the app agree on "now".
    if expires <= int(now.timestamp()):
        raise InvalidToken("token expired")
    family = payload.get("fam")
    return TokenClaims(
        user_id=user_id,
        type=expected,
        jti=str(payload["jti"]),
        expires_at=expires_at,
        family=family if isinstance(family, str) else None,
    )


def new_single_use_token() -> tuple[str, str]:
    """A random URL-safe token and the SHA-256 hex digest that is stored instead of it."""
    token = secrets.token_urlsafe(32)
    return token, hash_single_use_token(token)


def hash_single_use_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def csrf_violation(
    method: str,
    *,
    origin: str | None,
    referer: str | None,
    fetch_site: str | None = None,
    own_origin: str,
    trusted_origins: list[str],
    has_auth_cookie: bool,
) -> str | None:
    """Why a request must be refused as cross-site request forgery, or None when it may pass.

    The scheme (OWASP "verify origin with standard headers" plus Fetch Metadata, on top of
    SameSite cookies): a state-changing request must come from our own origin or a configured
    frontend origin. Browsers send `Origin` on cross-origin requests and on same-origin POSTs,
    and pages cannot forge it; `Referer` is the fallback. A foreign origin is refused even
    without cookies, so another site cannot sign a victim in to an attacker's account (login
    CSRF). `Sec-Fetch-Site: cross-site` is refused unless the origin is a configured frontend
    (which may live on another site). A request carrying our cookies with neither `Origin` nor
    `Referer` is refused: its source cannot be told (a stripped header, an old browser), and our
    clients always send `Origin`. Requests without cookies and without either header (API clients
    with a Bearer token, scripts) cannot ride on a session and pass. A double-submit token was
    not chosen because the existing Angular client cannot be changed and sends no such header.
    """
    if method.upper() not in UNSAFE_METHODS:
        return None
    trusted = {o.rstrip("/") for o in trusted_origins}
    allowed = {own_origin.rstrip("/"), *trusted}
    if origin is not None:
        if origin == "null" or origin.rstrip("/") not in allowed:
            return "Origin not allowed."
    elif referer is not None:
        if _origin_of(referer) not in allowed:
            return "Referer not allowed."
    elif has_auth_cookie:
        return "Origin checking failed: neither Origin nor Referer was sent."
    cross_site = fetch_site is not None and fetch_site.strip().lower() == "cross-site"
    if cross_site and (origin is None or origin.rstrip("/") not in trusted):
        return "Cross-site request."
    return None
