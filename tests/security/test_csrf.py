"""CSRF: every state-changing route of the route table, called with a signed-in user's cookies from
somewhere else, is refused with 403 before it runs; from our own origin or the configured frontend
it passes the CSRF layer. Login CSRF (another site signing the victim in) is refused too.

The defence is `security.csrf_violation` behind `main.CsrfMiddleware`: Origin (else Referer) must
be ours or the frontend's, a cookie-carrying request without either header is refused, and
`Sec-Fetch-Site: cross-site` passes only for a configured frontend origin.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx import Response
from videoflix_api.config import Settings

from tests.ops.apisupport import api as api_support
from tests.security.routetable import unsafe_routes

pytestmark = pytest.mark.security

settings = api_support.settings  # the API's fixture: real PostgreSQL, MinIO and SMTP
BASE = api_support.BASE  # the API's own origin
FRONTEND = "https://app.videoflix.test"  # the settings fixture's frontend_url

# Header sets a forged request can arrive with (each also carries the victim's cookies).
ATTACKS: dict[str, dict[str, str]] = {
    "foreign Origin": {"Origin": "https://evil.example"},
    "null Origin": {"Origin": "null"},
    "no Origin, no Referer": {},
    "Sec-Fetch-Site cross-site, no Origin": {"Sec-Fetch-Site": "cross-site"},
    "Sec-Fetch-Site cross-site, our Origin": {"Sec-Fetch-Site": "cross-site", "Origin": BASE},
    "foreign Referer": {"Referer": "https://evil.example/page"},
    "look-alike Origin": {"Origin": FRONTEND + ".evil.example"},
    "our host over plain HTTP": {"Origin": "http://testserver"},
}
# What our own pages and the Angular client send.
TRUSTED: dict[str, dict[str, str]] = {
    "our Origin": {"Origin": BASE},
    "frontend Origin": {"Origin": FRONTEND},
    "our Origin, same-origin fetch": {"Origin": BASE, "Sec-Fetch-Site": "same-origin"},
    "frontend Origin, cross-site fetch": {"Origin": FRONTEND, "Sec-Fetch-Site": "cross-site"},
    "frontend Referer only": {"Referer": FRONTEND + "/browse"},
}


@dataclass
class Victim:
    app: FastAPI
    client: TestClient
    cookie: str  # the Cookie header of a signed-in staff member
    video_id: int

    def send(
        self, method: str, path: str, headers: dict[str, str], cookie: bool = True
    ) -> Response:
        all_headers = {**headers, **({"Cookie": self.cookie} if cookie else {})}
        # An empty JSON body: the CSRF layer must decide before the body is even validated.
        response = self.client.request(
            method, path.format(video_id=self.video_id), json={}, headers=all_headers
        )
        self.client.cookies.clear()  # only the cookies named above ride on the next request
        return response


@pytest.fixture
def victim(settings: Settings) -> Iterator[Victim]:
    app = api_support.build_app(settings)
    try:
        with TestClient(app, base_url=BASE) as client:
            # Staff: every route is then open to the user, so a 403 can only be the CSRF layer's.
            account = api_support.make_user(app, "staff@example.com", staff=True)
            r = client.post(
                "/users/login/",
                json={"email": account.email, "password": account.password},
                headers={"Origin": BASE},
            )
            assert r.status_code == 200, r.text
            cookie = f"vf_access={r.cookies['vf_access']}; vf_refresh={r.cookies['vf_refresh']}"
            client.cookies.clear()
            yield Victim(app, client, cookie, api_support.add_video(app))
    finally:
        app.state.engine.dispose()


def _refused_as_csrf(response: Response) -> bool:
    return response.status_code == 403 and str(response.json().get("detail", "")).startswith(
        "CSRF Failed"
    )


def test_forged_state_changing_requests_are_refused_on_every_route(victim: Victim) -> None:
    routes = unsafe_routes(victim.app)
    assert len(routes) >= 17, routes  # register … multipart abort: the table, not a hand list
    through: list[str] = []
    for method, path in routes:
        for attack, headers in ATTACKS.items():
            r = victim.send(method, path, headers)
            if not _refused_as_csrf(r):
                through.append(f"{method} {path} with {attack}: {r.status_code} {r.text[:100]}")
    count = len(routes) * len(ATTACKS)
    print(f"CSRF: {len(routes)} state-changing routes x {len(ATTACKS)} forgeries = {count}")
    assert not through, f"{len(through)} of {count} forged requests got through:\n" + "\n".join(
        through
    )


def test_our_origin_and_the_frontend_pass_the_csrf_layer(victim: Victim) -> None:
    routes = unsafe_routes(victim.app)
    refused: list[str] = []
    # Last, so that the session ends only after every other route was tried.
    routes.sort(key=lambda route: route == ("POST", "/users/logout/"))
    for method, path in routes:
        for source, headers in TRUSTED.items():
            r = victim.send(method, path, headers)
            # A staff member may do everything: any 403 here would be the CSRF layer's.
            if r.status_code == 403:
                refused.append(f"{method} {path} from {source}: {r.text[:100]}")
    assert not refused, "\n".join(refused)


def test_login_csrf_is_refused_without_any_cookie(victim: Victim) -> None:
    account = api_support.make_user(victim.app, "attacker@example.com")
    body = {"email": account.email, "password": account.password}

    def login(headers: dict[str, str]) -> Response:
        r = victim.client.post("/users/login/", json=body, headers=headers)
        victim.client.cookies.clear()
        return r

    for attack in ("foreign Origin", "null Origin", "Sec-Fetch-Site cross-site, no Origin"):
        r = login(ATTACKS[attack])
        assert _refused_as_csrf(r), (attack, r.status_code, r.text)
        assert "set-cookie" not in r.headers, attack  # no session was planted
    r = login(ATTACKS["foreign Referer"])
    assert _refused_as_csrf(r), r.text
    # The frontend signs in; so do API clients that send no browser headers (and no cookies).
    assert login({"Origin": FRONTEND}).status_code == 200
    assert login({}).status_code == 200
    # Every other state-changing route refuses a foreign origin without cookies as well.
    for method, path in unsafe_routes(victim.app):
        r = victim.send(method, path, ATTACKS["foreign Origin"], cookie=False)
        assert _refused_as_csrf(r), (method, path, r.status_code, r.text)
