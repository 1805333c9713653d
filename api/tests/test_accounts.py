"""Accounts end to end: real mail through SMTP, real tokens, real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from videoflix_api import security
from videoflix_api.config import Settings
from videoflix_core.db import RefreshFamily

from .conftest import PASSWORD, Account, links, login, make_user


def set_cookies(response: Any) -> dict[str, SimpleCookie]:
    jar: dict[str, SimpleCookie] = {}
    for header in response.headers.get_list("set-cookie"):
        cookie: SimpleCookie = SimpleCookie()
        cookie.load(header)
        for name in cookie:
            jar[name] = cookie
    return jar


def only_mail(smtp: Any) -> Any:
    assert len(smtp.messages) == 1, [m["Subject"] for m in smtp.messages]
    return smtp.messages[0]


def mail_link(message: Any) -> str:
    text = message.get_body(("plain",)).get_content()
    return next(link for link in links(text) if "token=" in link)


def test_register_confirm_login_refresh_logout(client: TestClient, smtp_server: Any) -> None:
    email = "New.User@Example.com "
    r = client.post(
        "/users/register/",
        json={"email": email, "password": PASSWORD, "confirm_password": PASSWORD},
    )
    assert r.status_code == 201 and r.json() == {"email": "new.user@example.com"}
    # Not active before confirming.
    r = client.post("/users/login/", json={"email": email, "password": PASSWORD})
    assert r.status_code == 403

    message = only_mail(smtp_server)
    assert message["To"] == "new.user@example.com"
    assert message.is_multipart()
    assert {p.get_content_type() for p in message.iter_parts()} == {"text/plain", "text/html"}
    html = message.get_body(("html",)).get_content()
    link = mail_link(message)
    assert link.split("?")[0] == "https://testserver/users/confirm/"
    assert link.replace("&", "&amp;") in html

    r = client.get(link.removeprefix("https://testserver"), follow_redirects=False)
    assert r.status_code == 302
    assert r.headers["location"] == "https://app.videoflix.test/login?confirmed=1"
    # Opening it again (a mail scanner got there first) is still a success, and harmless.
    r = client.get(link.removeprefix("https://testserver"), follow_redirects=False)
    assert r.headers["location"].endswith("confirmed=1")

    r = client.post("/users/login/", json={"email": email, "password": PASSWORD})
    assert r.status_code == 200
    body = r.json()
    assert body["email"] == "new.user@example.com" and body["favorite_videos"] == []
    cookies = set_cookies(r)
    access, refresh = cookies["vf_access"]["vf_access"], cookies["vf_refresh"]["vf_refresh"]
    for morsel in (access, refresh):
        assert morsel["httponly"] and morsel["secure"] and morsel["path"] == "/"
        assert morsel["samesite"].lower() == "lax"
    assert int(access["max-age"]) == 300 and int(refresh["max-age"]) == 3600

    assert client.get("/users/me/").json()["email"] == "new.user@example.com"

    old_refresh = client.cookies.get("vf_refresh")
    r = client.post("/users/refresh/")
    assert r.status_code == 200
    assert client.cookies.get("vf_refresh") not in (None, old_refresh)
    assert client.get("/users/me/").status_code == 200

    last_refresh = client.cookies.get("vf_refresh")
    r = client.post("/users/logout/")
    assert r.status_code == 200
    assert "vf_access" not in client.cookies and "vf_refresh" not in client.cookies
    assert client.get("/users/me/").status_code == 401
    # The refresh token of the ended session no longer works either.
    assert post_with(client, "/users/refresh/", vf_refresh=last_refresh).status_code == 401


def post_with(client: TestClient, path: str, **cookies: str | None) -> Any:
    """POST with exactly these cookies (replacing the client's)."""
    client.cookies.clear()
    for name, value in cookies.items():
        client.cookies.set(name, value or "")
    return client.post(path)


def get_with(client: TestClient, path: str, **cookies: str | None) -> Any:
    client.cookies.clear()
    for name, value in cookies.items():
        client.cookies.set(name, value or "")
    return client.get(path)


def test_logout_needs_no_valid_access_cookie(client: TestClient, user: Account) -> None:
    # Signing out always succeeds: the client drops its state whatever cookies it still holds.
    assert client.post("/users/logout/").status_code == 200
    r = post_with(client, "/users/logout/", vf_access="not-a-jwt")
    assert r.status_code == 200 and r.json() == {"detail": "Logged out."}


def test_remember_me_lengthens_the_refresh_cookie(client: TestClient, user: Account) -> None:
    r = client.post(
        "/users/login/", json={"email": user.email, "password": PASSWORD, "remember": True}
    )
    refresh = set_cookies(r)["vf_refresh"]["vf_refresh"]
    assert int(refresh["max-age"]) == 7 * 24 * 3600
    # The rotated token keeps the family's lifetime.
    r = client.post("/users/refresh/")
    assert int(set_cookies(r)["vf_refresh"]["vf_refresh"]["max-age"]) == 7 * 24 * 3600


def test_reused_refresh_token_revokes_the_family(
    client: TestClient, app: FastAPI, user: Account
) -> None:
    login(client, user)
    stolen = client.cookies.get("vf_refresh")
    assert client.post("/users/refresh/").status_code == 200  # the legitimate rotation
    current = client.cookies.get("vf_refresh")

    # The thief replays the old token: refused, and the whole session ends.
    r = post_with(client, "/users/refresh/", vf_refresh=stolen or "")
    assert r.status_code == 401
    with app.state.sessionmaker() as session:
        family = session.scalars(select(RefreshFamily)).one()
        assert family.revoked_at is not None and family.revoked_reason == "reuse"
    # ...including for the legitimate holder of the newest token.
    r = post_with(client, "/users/refresh/", vf_refresh=current or "")
    assert r.status_code == 401


def test_reuse_within_grace_does_not_revoke(settings: Settings, user: Account) -> None:
    from .conftest import build_app

    app = build_app(settings.model_copy(update={"refresh_reuse_grace_seconds": 30}))
    with TestClient(app, base_url="https://testserver") as client:
        make_user(app, "tabs@example.com")
        login(client, Account(0, "tabs@example.com", PASSWORD))
        first = client.cookies.get("vf_refresh")
        assert client.post("/users/refresh/").status_code == 200
        current = client.cookies.get("vf_refresh")
        # A second tab presents the same token a moment later: it gets the same successor.
        again = post_with(client, "/users/refresh/", vf_refresh=first)
        assert again.status_code == 200
        assert set_cookies(again)["vf_refresh"]["vf_refresh"].value == current
        assert post_with(client, "/users/refresh/", vf_refresh=current).status_code == 200
    app.state.engine.dispose()


def test_expired_tokens_are_refused(client: TestClient, settings: Settings, user: Account) -> None:
    secret = settings.secret_key.get_secret_value()
    past = datetime.now(UTC) - timedelta(hours=2)
    access, _ = security.create_token(
        secret, user_id=user.id, token_type="access", now=past, lifetime=timedelta(minutes=5)
    )
    assert get_with(client, "/users/me/", vf_access=access).status_code == 401
    refresh, _ = security.create_token(
        secret,
        user_id=user.id,
        token_type="refresh",
        now=past,
        lifetime=timedelta(hours=1),
        family="nope",
    )
    assert post_with(client, "/users/refresh/", vf_refresh=refresh).status_code == 401
    # A valid-looking token signed with another key is refused too.
    forged, _ = security.create_token(
        "x" * 48,
        user_id=user.id,
        token_type="access",
        now=datetime.now(UTC),
        lifetime=timedelta(minutes=5),
    )
    assert get_with(client, "/users/me/", vf_access=forged).status_code == 401
    # ...and so is a refresh token presented as an access token.
    login(client, user)
    as_access = client.cookies.get("vf_refresh") or ""
    client.cookies.clear()
    assert get_with(client, "/users/me/", vf_access=as_access).status_code == 401


def test_login_failures(client: TestClient, user: Account) -> None:
    r = client.post("/users/login/", json={"email": user.email, "password": "wrong password"})
    assert r.status_code == 401 and r.json() == {"detail": "Invalid email or password."}
    r = client.post("/users/login/", json={"email": "nobody@example.com", "password": PASSWORD})
    assert r.status_code == 401 and r.json() == {"detail": "Invalid email or password."}
    r = client.post("/users/login/", json={"email": user.email})
    assert r.status_code == 400 and r.json() == {"password": ["This field is required."]}
    r = client.post(
        "/users/login/", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 400 and "non_field_errors" in r.json()


def test_register_validation_errors(client: TestClient, smtp_server: Any) -> None:
    r = client.post(
        "/users/register/",
        json={"email": "not-an-email", "password": "short", "confirm_password": "other"},
    )
    assert r.status_code == 400
    body = r.json()
    assert body["email"] == ["Enter a valid email address."]
    assert any("too short" in m for m in body["password"])
    assert body["confirm_password"] == ["Passwords do not match."]
    assert smtp_server.messages == []


def test_register_does_not_reveal_existing_accounts(
    client: TestClient, user: Account, smtp_server: Any
) -> None:
    r = client.post(
        "/users/register/",
        json={"email": user.email.upper(), "password": PASSWORD, "confirm_password": PASSWORD},
    )
    assert r.status_code == 201 and r.json() == {"email": user.email}
    message = only_mail(smtp_server)
    assert "already has a Videoflix account" in message.get_body(("plain",)).get_content()
    # The existing password is untouched.
    login(client, user)


def test_confirm_with_bad_or_expired_tokens(
    client: TestClient, app: FastAPI, settings: Settings, smtp_server: Any
) -> None:
    client.post(
        "/users/register/",
        json={"email": "late@example.com", "password": PASSWORD, "confirm_password": PASSWORD},
    )
    link = mail_link(only_mail(smtp_server))
    query = parse_qs(urlsplit(link).query)
    uid, token = query["uid"][0], query["token"][0]
    r = client.get(
        "/users/confirm/", params={"uid": uid, "token": token + "x"}, follow_redirects=False
    )
    assert r.headers["location"].endswith("confirmed=0")
    r = client.get(
        "/users/confirm/", params={"uid": int(uid) + 1, "token": token}, follow_redirects=False
    )
    assert r.headers["location"].endswith("confirmed=0")
    r = client.get("/users/confirm/", params={"uid": "abc", "token": token})
    assert r.status_code == 400 and "uid" in r.json()

    # Expire the token in the database: the link stops working.
    from sqlalchemy import update
    from videoflix_core.db import SingleUseToken

    with app.state.sessionmaker() as session:
        session.execute(
            update(SingleUseToken).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
        session.commit()
    r = client.get("/users/confirm/", params={"uid": uid, "token": token}, follow_redirects=False)
    assert r.headers["location"].endswith("confirmed=0")
    assert (
        client.post(
            "/users/login/", json={"email": "late@example.com", "password": PASSWORD}
        ).status_code
        == 403
    )


def test_password_reset_flow(client: TestClient, user: Account, smtp_server: Any) -> None:
    login(client, user)
    old_refresh = client.cookies.get("vf_refresh")
    client.cookies.clear()

    r = client.post("/users/forgot-password/", json={"email": user.email})
    assert r.status_code == 200
    message = only_mail(smtp_server)
    assert message.is_multipart() and message.get_body(("html",)) is not None
    link = mail_link(message)
    assert link.startswith("https://app.videoflix.test/reset-password?")
    query = parse_qs(urlsplit(link).query)
    body = {
        "uid": int(query["uid"][0]),
        "token": query["token"][0],
        "new_password": "a brand new passphrase",
    }

    r = client.post("/users/reset-password/", json={**body, "new_password": "123"})
    assert r.status_code == 400 and "new_password" in r.json()
    r = client.post("/users/reset-password/", json=body)
    assert r.status_code == 200
    # Single use.
    r = client.post("/users/reset-password/", json={**body, "new_password": "yet another one!"})
    assert r.status_code == 400 and r.json() == {"detail": "Invalid or expired reset link."}

    assert (
        client.post("/users/login/", json={"email": user.email, "password": PASSWORD}).status_code
        == 401
    )
    login(client, Account(user.id, user.email, "a brand new passphrase"))
    # Sessions from before the reset are over.
    assert post_with(client, "/users/refresh/", vf_refresh=old_refresh or "").status_code == 401


def test_forgot_password_for_unknown_email_answers_the_same(
    client: TestClient, smtp_server: Any
) -> None:
    r = client.post("/users/forgot-password/", json={"email": "ghost@example.com"})
    assert r.status_code == 200
    assert r.json() == {
        "detail": "If an account exists for this email, a reset link has been sent."
    }
    assert smtp_server.messages == []


def test_reset_with_a_wrong_token(client: TestClient, user: Account) -> None:
    r = client.post(
        "/users/reset-password/",
        json={"uid": user.id, "token": "guess", "new_password": "a brand new passphrase"},
    )
    assert r.status_code == 400


def test_email_exists(client: TestClient, user: Account) -> None:
    assert client.get("/users/email-exists/", params={"email": user.email.upper()}).json() == {
        "exists": True
    }
    assert client.get("/users/email-exists/", params={"email": "x@example.com"}).json() == {
        "exists": False
    }
    assert client.get("/users/email-exists/").status_code == 400


def test_me_and_favorites_in_login(client: TestClient, app: FastAPI, user: Account) -> None:
    from .conftest import add_video

    assert client.get("/users/me/").status_code == 401
    video_id = add_video(app)
    login(client, user)
    assert client.post("/content/add-favorite/", json={"video_id": video_id}).json() == [video_id]
    client.cookies.clear()
    assert login(client, user)["favorite_videos"] == [video_id]
