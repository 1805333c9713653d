"""Sessions as the unchanged Angular client drives them, over real HTTP against a running uvicorn on
PostgreSQL: parallel refreshes after the access cookie expired, and logout from the refresh cookie
alone."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.cookies import SimpleCookie

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from videoflix_api import security
from videoflix_api.config import Settings
from videoflix_core.db import RefreshFamily, RefreshToken

from .conftest import PASSWORD, build_app, make_user, serve

FRONTEND = "https://app.videoflix.test"  # the settings fixture's frontend, a trusted origin


def cookies_set(response: httpx.Response) -> dict[str, SimpleCookie]:
    """Each Set-Cookie header parsed, by cookie name."""
    found: dict[str, SimpleCookie] = {}
    for header in response.headers.get_list("set-cookie"):
        jar: SimpleCookie = SimpleCookie()
        jar.load(header)
        for name in jar:
            found[name] = jar
    return found


def value(response: httpx.Response, name: str) -> str:
    return cookies_set(response)[name][name].value


def post(url: str, path: str, **cookies: str) -> httpx.Response:
    # Cookies are sent by hand: the API sets them Secure, and this is plain HTTP on loopback.
    header = "; ".join(f"{k}={v}" for k, v in cookies.items())
    return httpx.post(
        url + path, headers={"Origin": FRONTEND, **({"Cookie": header} if header else {})}
    )


@pytest.fixture
def graced_app(settings: Settings) -> Iterator[FastAPI]:
    application = build_app(settings.model_copy(update={"refresh_reuse_grace_seconds": 30}))
    yield application
    application.state.engine.dispose()


@pytest.fixture
def graced_url(graced_app: FastAPI) -> Iterator[str]:
    with serve(graced_app) as url:
        yield url


def login(url: str, email: str) -> httpx.Response:
    response = httpx.post(
        url + "/users/login/",
        json={"email": email, "password": PASSWORD, "remember": False},
        headers={"Origin": FRONTEND},
    )
    assert response.status_code == 200, response.text
    return response


def refresh_twice_at_once(url: str, token: str) -> list[httpx.Response]:
    barrier = threading.Barrier(2)
    answers: list[httpx.Response | BaseException] = [RuntimeError("no answer")] * 2

    def one(index: int) -> None:
        # Separate connections, released together: the two transactions really overlap.
        with httpx.Client(base_url=url, headers={"Origin": FRONTEND}, timeout=30) as client:
            barrier.wait(timeout=10)
            try:
                answers[index] = client.post(
                    "/users/refresh/", headers={"Cookie": f"vf_refresh={token}"}
                )
            except BaseException as exc:  # reported by the assertion below
                answers[index] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert all(isinstance(a, httpx.Response) for a in answers), answers
    return [a for a in answers if isinstance(a, httpx.Response)]


def test_two_simultaneous_refreshes_share_one_successor(
    graced_app: FastAPI, graced_url: str
) -> None:
    rounds = 5  # each round is a fresh login: five chances for the requests to collide
    for n in range(rounds):
        account = make_user(graced_app, f"tabs{n}@example.com")
        first = value(login(graced_url, account.email), "vf_refresh")

        answers = refresh_twice_at_once(graced_url, first)

        assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
        successors = {value(a, "vf_refresh") for a in answers}
        assert len(successors) == 1, "both answers must carry the same successor"
        [successor] = successors
        assert successor != first
        for answer in answers:
            refresh_cookie = cookies_set(answer)["vf_refresh"]["vf_refresh"]
            assert 3500 <= int(refresh_cookie["max-age"]) <= 3600
        # The session works with either answer's access cookie...
        for answer in answers:
            me = httpx.get(
                graced_url + "/users/me/",
                headers={"Cookie": f"vf_access={value(answer, 'vf_access')}"},
            )
            assert me.status_code == 200 and me.json()["email"] == account.email
        # ...and rotates on later.
        later = post(graced_url, "/users/refresh/", vf_refresh=successor)
        assert later.status_code == 200, later.text
        assert value(later, "vf_refresh") not in (first, successor)

        with graced_app.state.sessionmaker() as session:
            families = session.scalars(
                select(RefreshFamily).where(RefreshFamily.user_id == account.id)
            ).all()
            assert len(families) == 1 and families[0].revoked_at is None
            tokens = session.scalar(
                select(func.count())
                .select_from(RefreshToken)
                .where(RefreshToken.family_id == families[0].id)
            )
            assert tokens == 3, "login, one shared successor, the later rotation"


def test_reuse_after_the_grace_window_still_ends_the_session(
    graced_app: FastAPI, graced_url: str, settings: Settings
) -> None:
    account = make_user(graced_app, "late@example.com")
    first = value(login(graced_url, account.email), "vf_refresh")
    successor = value(post(graced_url, "/users/refresh/", vf_refresh=first), "vf_refresh")
    # Pretend the rotation happened longer ago than the window.
    with graced_app.state.sessionmaker() as session:
        claims = security.decode_token(
            settings.secret_key.get_secret_value(), first, "refresh", now=datetime.now(UTC)
        )
        row = session.get(RefreshToken, claims.jti)
        assert row is not None and row.used_at is not None
        row.used_at = row.used_at - timedelta(seconds=31)
        session.commit()

    assert post(graced_url, "/users/refresh/", vf_refresh=first).status_code == 401
    # The family is gone, so the successor (held by whoever rotated first) is refused too.
    assert post(graced_url, "/users/refresh/", vf_refresh=successor).status_code == 401
    with graced_app.state.sessionmaker() as session:
        family = session.scalars(
            select(RefreshFamily).where(RefreshFamily.user_id == account.id)
        ).one()
        assert family.revoked_reason == "reuse"


def cleared(response: httpx.Response) -> set[str]:
    """Names of the cookies the response deletes (Max-Age=0)."""
    return {name for name, jar in cookies_set(response).items() if jar[name]["max-age"] == "0"}


def test_logout_with_only_the_refresh_cookie(app: FastAPI, live_url: str) -> None:
    account = make_user(app, "leaving@example.com")
    refresh_token = value(login(live_url, account.email), "vf_refresh")

    # The access cookie expired long ago: only the refresh cookie reaches the server.
    response = post(live_url, "/users/logout/", vf_refresh=refresh_token)

    assert response.status_code == 200, response.text
    assert cleared(response) == {"vf_access", "vf_refresh"}
    assert post(live_url, "/users/refresh/", vf_refresh=refresh_token).status_code == 401
    with app.state.sessionmaker() as session:
        family = session.scalars(
            select(RefreshFamily).where(RefreshFamily.user_id == account.id)
        ).one()
        assert family.revoked_reason == "logout"


def test_logout_without_cookies_still_clears_them(live_url: str) -> None:
    response = post(live_url, "/users/logout/")
    assert response.status_code == 200
    assert cleared(response) == {"vf_access", "vf_refresh"}
    # A stale or forged refresh cookie is no reason to fail a logout either.
    response = post(live_url, "/users/logout/", vf_refresh="not-a-jwt", vf_access="expired")
    assert response.status_code == 200 and cleared(response) == {"vf_access", "vf_refresh"}


def test_logout_from_a_foreign_origin_is_refused(app: FastAPI, live_url: str) -> None:
    account = make_user(app, "victim@example.com")
    refresh_token = value(login(live_url, account.email), "vf_refresh")
    response = httpx.post(
        live_url + "/users/logout/",
        headers={"Origin": "https://evil.example", "Cookie": f"vf_refresh={refresh_token}"},
    )
    assert response.status_code == 403
    assert post(live_url, "/users/refresh/", vf_refresh=refresh_token).status_code == 200
