"""JWT tampering: forged, altered, expired and misused tokens are all refused with 401, on a
protected route (GET /users/me/) over the `vf_access` cookie and as a Bearer header, and at
/users/refresh/ over the `vf_refresh` cookie.

The app signs HS256 with its secret key and uses no audience or issuer claims; `security.
decode_token` pins the algorithm and requires sub, typ, jti and exp. Tokens that need a valid
signature to reach a claim check (expired, no exp, wrong type) are signed with the server's own
key, so only that claim can be why they are refused.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import FastAPI
from fastapi.testclient import TestClient
from videoflix_api import security
from videoflix_api.config import Settings

from tests.ops.apisupport import api as api_support

pytestmark = pytest.mark.security

settings = api_support.settings  # the API's fixture: real PostgreSQL, MinIO and SMTP
BASE = api_support.BASE


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _raw(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    """A token assembled by hand (for what pyjwt refuses to produce)."""
    parts = [json.dumps(header).encode(), json.dumps(payload).encode()]
    return ".".join([*(_b64(p) for p in parts), _b64(signature)])


@dataclass
class Session:
    app: FastAPI
    client: TestClient
    secret: str
    user_id: int
    staff_id: int
    access: str  # a real access token from /users/login/
    refresh: str  # the real refresh token of the same sign-in

    def claims(self, **changes: Any) -> dict[str, Any]:
        """A valid access payload for the user, with `changes` (None removes a claim)."""
        now = int(datetime.now(UTC).timestamp())
        payload = {
            "sub": str(self.user_id),
            "typ": "access",
            "jti": "forged",
            "iat": now,
            "exp": now + 300,
        }
        payload.update(changes)
        return {k: v for k, v in payload.items() if v is not None}

    def get(self, path: str, cookies: dict[str, str], bearer: str | None = None) -> int:
        headers = {"Origin": BASE}
        if cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
        if bearer is not None:
            headers["Authorization"] = f"Bearer {bearer}"
        method = "POST" if path == "/users/refresh/" else "GET"
        status = self.client.request(method, path, headers=headers).status_code
        self.client.cookies.clear()
        return status


@pytest.fixture
def session(settings: Settings) -> Iterator[Session]:
    app = api_support.build_app(settings)
    try:
        with TestClient(app, base_url=BASE) as client:
            user = api_support.make_user(app, "viewer@example.com")
            staff = api_support.make_user(app, "staff@example.com", staff=True)
            r = client.post(
                "/users/login/",
                json={"email": user.email, "password": user.password},
                headers={"Origin": BASE},
            )
            assert r.status_code == 200, r.text
            access, refresh = r.cookies["vf_access"], r.cookies["vf_refresh"]
            client.cookies.clear()
            yield Session(
                app,
                client,
                settings.secret_key.get_secret_value(),
                user.id,
                staff.id,
                access,
                refresh,
            )
    finally:
        app.state.engine.dispose()


def _rsa_pem() -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


def forged_access_tokens(s: Session) -> dict[str, str]:
    """Each way to fake or misuse an access token, by name."""
    rsa_private, rsa_public = _rsa_pem()
    ec_private = ec.generate_private_key(ec.SECP256R1())
    valid = s.claims()
    head, body, sig = s.access.split(".")
    staff_body = _b64(
        json.dumps({**json.loads(base64.urlsafe_b64decode(body + "==")), "sub": str(s.staff_id)})
        .replace(" ", "")
        .encode()
    )
    hs256: Callable[..., str] = lambda payload, key=s.secret, **kw: jwt.encode(  # noqa: E731
        payload, key, algorithm="HS256", **kw
    )
    now = int(datetime.now(UTC).timestamp())
    tokens = {
        # Algorithm games.
        **{
            f"alg {alg}": _raw({"alg": alg, "typ": "JWT"}, valid)
            for alg in ("none", "None", "NONE", "nOnE")
        },
        "alg none with the real signature": _raw({"alg": "none"}, valid, b"x" * 32),
        "alg header dropped": _raw({"typ": "JWT"}, valid),
        "HS512 with the server's key": jwt.encode(valid, s.secret, algorithm="HS512"),
        "HS384 with the server's key": jwt.encode(valid, s.secret, algorithm="HS384"),
        "RS256 with an attacker's RSA key": jwt.encode(valid, rsa_private, algorithm="RS256"),
        "ES256 with an attacker's EC key": jwt.encode(valid, ec_private, algorithm="ES256"),
        "HS256 keyed with RSA public key material": _raw(
            {"alg": "HS256", "typ": "JWT"}, valid, _hmac(rsa_public, valid)
        ),
        "RS256 header over the server's HMAC": _resign_header(
            hs256(valid), {"alg": "RS256", "typ": "JWT"}
        ),
        "HS256 with another key": hs256(valid, "another secret key, 32 bytes long!!"),
        "HS256 with an empty key": _raw({"alg": "HS256", "typ": "JWT"}, valid, _hmac(b"", valid)),
        "attacker key named by jku/kid headers": hs256(
            valid,
            "attacker secret key, 32 bytes long!",
            headers={"kid": "../../dev/null", "jku": "https://evil.example/jwks.json"},
        ),
        # Altered tokens.
        "payload changed to staff, old signature": f"{head}.{staff_body}.{sig}",
        "signature stripped": f"{head}.{body}.",
        "signature of another token": f"{head}.{body}.{hs256(s.claims(jti='x')).split('.')[2]}",
        "garbage": "not.a.jwt",
        "empty segments": "..",
        # Claims, signed with the server's own key.
        "expired": hs256(s.claims(iat=now - 600, exp=now - 1)),
        "expiring this second": hs256(s.claims(exp=now)),
        "no exp": hs256(s.claims(exp=None)),
        "non-numeric exp": hs256(s.claims(exp="never")),
        "exp beyond any date": hs256(s.claims(exp=10**20)),
        "no sub": hs256(s.claims(sub=None)),
        "non-numeric sub": hs256(s.claims(sub="admin")),
        "sub of no user": hs256(s.claims(sub="2147483000")),
        "no jti": hs256(s.claims(jti=None)),
        "no typ": hs256(s.claims(typ=None)),
        "typ refresh (a forged refresh token)": hs256(s.claims(typ="refresh")),
        "typ ACCESS": hs256(s.claims(typ="ACCESS")),
        "typ JWT": hs256(s.claims(typ="JWT")),
        "an audience the app does not use": hs256(s.claims(aud="https://other.example")),
        "not valid before the future": hs256(s.claims(nbf=now + 3600)),
        # Misuse of real tokens.
        "the real refresh token as access": s.refresh,
    }
    return tokens


def _hmac(key: bytes, payload: dict[str, Any]) -> bytes:
    import hashlib
    import hmac

    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    signing_input = f"{header}.{_b64(json.dumps(payload).encode())}".encode()
    return hmac.new(key, signing_input, hashlib.sha256).digest()


def _resign_header(token: str, header: dict[str, Any]) -> str:
    _, body, sig = token.split(".")
    return f"{_b64(json.dumps(header).encode())}.{body}.{sig}"


def test_every_tampered_access_token_is_refused(session: Session) -> None:
    # The real token is accepted: else every refusal below could be a broken setup.
    assert session.get("/users/me/", {"vf_access": session.access}) == 200
    assert session.get("/users/me/", {}, bearer=session.access) == 200
    assert session.get("/users/me/", {}) == 401
    fresh, _ = security.create_token(
        session.secret,
        user_id=session.user_id,
        token_type="access",
        now=datetime.now(UTC),
        lifetime=timedelta(minutes=5),
    )
    assert session.get("/users/me/", {"vf_access": fresh}) == 200

    tokens = forged_access_tokens(session)
    accepted: list[str] = []
    for name, token in tokens.items():
        for channel, status in (
            ("cookie", session.get("/users/me/", {"vf_access": token})),
            ("bearer", session.get("/users/me/", {}, bearer=token)),
        ):
            if status != 401:
                accepted.append(f"{name} over the {channel}: {status}")
    print(f"JWT: {len(tokens)} tampered access tokens x 2 channels = {2 * len(tokens)} requests")
    assert not accepted, "\n".join(accepted)


def test_access_tokens_and_forged_ones_cannot_refresh(session: Session) -> None:
    now = int(datetime.now(UTC).timestamp())
    refresh_claims = session.claims(typ="refresh", jti="forged-refresh", fam="forged-family")
    tokens = {
        "the real access token as refresh": session.access,
        "alg none refresh": _raw({"alg": "none"}, refresh_claims),
        "refresh signed with another key": jwt.encode(
            refresh_claims, "another secret key, 32 bytes long!!", algorithm="HS256"
        ),
        "expired refresh": jwt.encode(
            {**refresh_claims, "exp": now - 1}, session.secret, algorithm="HS256"
        ),
        "refresh of no session (unknown jti/family)": jwt.encode(
            refresh_claims, session.secret, algorithm="HS256"
        ),
    }
    for name, token in tokens.items():
        assert session.get("/users/refresh/", {"vf_refresh": token}) == 401, name
    print(f"JWT: {len(tokens)} tampered refresh tokens")
    # The real one still rotates: the refusals above were about the tokens.
    assert session.get("/users/refresh/", {"vf_refresh": session.refresh}) == 200
