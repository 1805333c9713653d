"""Authorization matrix: every route of the app's route table x {anonymous, inactive, viewer,
staff} answers the status this file's table expects, on real PostgreSQL and MinIO.

The expectations are data (`ROUTES`): each route is public, signed-in or staff-only, and says what
an allowed caller gets for the request sent (a real 2xx, or the 4xx the request itself earns).
Anonymous callers get 401 on every non-public route, viewers 403 on every staff route. The
inactive user (registered, never confirmed) cannot sign in (403 from /users/login/); a token
forged for them with the server's own key is refused with 401 like an anonymous caller, because
`deps.get_current_user` treats an inactive account as no account. Only the access cookie is sent
for a role: /users/refresh/ is authorized by the refresh cookie alone (tested in test_jwt.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from videoflix_api import security
from videoflix_api.config import Settings

from tests.ops.apisupport import api as api_support
from tests.security.routetable import route_table

pytestmark = pytest.mark.security

settings = api_support.settings  # the API's fixture: real PostgreSQL, MinIO and SMTP
media = api_support.media  # real H.264/AAC media made with ffmpeg
BASE = api_support.BASE
ROLES = ("anonymous", "inactive", "viewer", "staff")


class Access(Enum):
    PUBLIC = "public"  # everyone gets `ok`
    SIGNED_IN = "signed-in"  # anonymous/inactive 401, viewer and staff `ok`
    STAFF = "staff"  # anonymous/inactive 401, viewer 403, staff `ok`


@dataclass
class World:
    """What the requests refer to: real rows and objects, so allowed callers get real answers."""

    app: FastAPI
    client: TestClient
    cookies: dict[str, str]  # role → Cookie header
    ready_video: int
    media: Any
    minio: Any
    bucket: str

    def fresh_video(self, **fields: Any) -> int:
        return int(api_support.add_video(self.app, **fields))

    def failed_video(self) -> int:
        return self.fresh_video(processing_state="error", source_key="videos/0/source/a.mp4")

    def video_with_upload(self) -> int:
        video_id = self.fresh_video()
        r = self.client.post(
            f"/videos/{video_id}/multipart/",
            json={"filename": "a.mp4", "size": 1000},
            headers={"Origin": BASE, "Cookie": self.cookies["staff"]},
        )
        assert r.status_code == 201, r.text
        return video_id


Request = dict[str, Any]
Prepare = Callable[[World], tuple[dict[str, Any], Request]]  # path params, request kwargs


def none(_: World) -> tuple[dict[str, Any], Request]:
    return {}, {}


def ready(extra: Request | None = None) -> Prepare:
    return lambda w: ({"video_id": w.ready_video, "quality": "120p"}, extra or {})


def body(data: Any) -> Prepare:
    return lambda _: ({}, {"json": data})


def on(make: Callable[[World], int], extra: Request | None = None) -> Prepare:
    return lambda w: ({"video_id": make(w)}, extra or {})


def upload(w: World) -> Request:
    return {"files": {"file": ("a.mp4", w.media.source.read_bytes(), "video/mp4")}}


@dataclass(frozen=True)
class Rule:
    access: Access
    ok: int  # the status an allowed caller gets for the request `prepare` builds
    prepare: Prepare = none
    form: bool = False  # the request carries an uploaded file (built per call)


NEW_PASSWORD = "another horse battery"
ROUTES: dict[tuple[str, str], Rule] = {
    # Framework pages and operations endpoints: public (the chart keeps /metrics off the ingress).
    ("GET", "/openapi.json"): Rule(Access.PUBLIC, 200),
    ("GET", "/docs"): Rule(Access.PUBLIC, 200),
    ("GET", "/docs/oauth2-redirect"): Rule(Access.PUBLIC, 200),
    ("GET", "/redoc"): Rule(Access.PUBLIC, 200),
    ("GET", "/healthz"): Rule(Access.PUBLIC, 200),
    ("GET", "/health"): Rule(Access.PUBLIC, 200),
    ("GET", "/health/"): Rule(Access.PUBLIC, 200),
    ("GET", "/ready"): Rule(Access.PUBLIC, 200),
    ("GET", "/metrics"): Rule(Access.PUBLIC, 200),
    # Accounts: public by nature (a signed-in caller gets the same answer).
    ("GET", "/users/email-exists/"): Rule(
        Access.PUBLIC, 200, lambda _: ({}, {"params": {"email": "nobody@example.com"}})
    ),
    ("POST", "/users/register/"): Rule(
        Access.PUBLIC,
        201,
        body(
            {
                "email": "new@example.com",
                "password": NEW_PASSWORD,
                "confirm_password": NEW_PASSWORD,
            }
        ),
    ),
    # A wrong token redirects to the frontend with confirmed=0: still 302.
    ("GET", "/users/confirm/"): Rule(
        Access.PUBLIC,
        302,
        lambda _: ({}, {"params": {"uid": 1, "token": "wrong"}, "follow_redirects": False}),
    ),
    ("POST", "/users/login/"): Rule(
        Access.PUBLIC, 401, body({"email": "nobody@example.com", "password": NEW_PASSWORD})
    ),
    # Authorized by the refresh cookie, which no role sends here.
    ("POST", "/users/refresh/"): Rule(Access.PUBLIC, 401),
    ("POST", "/users/logout/"): Rule(Access.PUBLIC, 200),
    ("POST", "/users/forgot-password/"): Rule(
        Access.PUBLIC, 200, body({"email": "nobody@example.com"})
    ),
    ("POST", "/users/reset-password/"): Rule(
        Access.PUBLIC, 400, body({"uid": 1, "token": "wrong", "new_password": NEW_PASSWORD})
    ),
    ("GET", "/users/me/"): Rule(Access.SIGNED_IN, 200),
    # The catalogue and playback: signed-in users.
    ("GET", "/content/"): Rule(Access.SIGNED_IN, 200),
    ("POST", "/content/add-favorite/"): Rule(
        Access.SIGNED_IN, 200, lambda w: ({}, {"json": {"video_id": w.ready_video}})
    ),
    ("GET", "/content/favorites/"): Rule(Access.SIGNED_IN, 200),
    ("GET", "/content/video-url/{video_id}/"): Rule(Access.SIGNED_IN, 200, ready()),
    ("GET", "/videos/"): Rule(Access.SIGNED_IN, 200),
    ("GET", "/videos/categories/"): Rule(Access.SIGNED_IN, 200),
    ("GET", "/videos/{video_id}/"): Rule(Access.SIGNED_IN, 200, ready()),
    ("GET", "/videos/{video_id}/thumbnail/"): Rule(
        Access.SIGNED_IN, 302, ready({"follow_redirects": False})
    ),
    ("GET", "/videos/{video_id}/file/"): Rule(
        Access.SIGNED_IN, 302, ready({"follow_redirects": False})
    ),
    ("GET", "/videos/{video_id}/hls/master.m3u8"): Rule(Access.SIGNED_IN, 200, ready()),
    ("GET", "/videos/{video_id}/hls/{quality}/index.m3u8"): Rule(Access.SIGNED_IN, 200, ready()),
    # The ten staff routes. Each mutating request works on a fresh video of its own.
    ("POST", "/videos/"): Rule(Access.STAFF, 201, body({"title": "New"})),
    ("POST", "/videos/upload/"): Rule(
        Access.STAFF, 201, lambda _: ({}, {"data": {"title": "Up"}}), form=True
    ),
    ("PUT", "/videos/{video_id}/source/"): Rule(
        Access.STAFF, 200, on(World.fresh_video), form=True
    ),
    ("PATCH", "/videos/{video_id}/"): Rule(
        Access.STAFF, 200, on(World.fresh_video, {"json": {"title": "Renamed"}})
    ),
    ("DELETE", "/videos/{video_id}/"): Rule(Access.STAFF, 204, on(World.fresh_video)),
    ("POST", "/videos/{video_id}/retry/"): Rule(Access.STAFF, 200, on(World.failed_video)),
    ("POST", "/videos/{video_id}/multipart/"): Rule(
        Access.STAFF, 201, on(World.fresh_video, {"json": {"filename": "a.mp4", "size": 1000}})
    ),
    ("POST", "/videos/{video_id}/multipart/parts/"): Rule(
        Access.STAFF, 200, on(World.video_with_upload, {"json": {"part_numbers": [1]}})
    ),
    # No part was uploaded, so storage refuses to complete: a 400 that only staff reach.
    ("POST", "/videos/{video_id}/multipart/complete/"): Rule(
        Access.STAFF,
        400,
        on(World.video_with_upload, {"json": {"parts": [{"part_number": 1, "etag": "x"}]}}),
    ),
    ("DELETE", "/videos/{video_id}/multipart/"): Rule(
        Access.STAFF, 204, on(World.video_with_upload)
    ),
}


def expected(rule: Rule, role: str) -> int:
    """The status `role` gets from a route with `rule`: the matrix's one decision."""
    if rule.access is Access.PUBLIC:
        return rule.ok
    if role in ("anonymous", "inactive"):
        return 401
    if rule.access is Access.STAFF and role == "viewer":
        return 403
    return rule.ok


@pytest.fixture
def world(settings: Settings, media: Any, minio_server: Any, s3_bucket: str) -> Iterator[World]:
    app = api_support.build_app(settings)
    try:
        with TestClient(app, base_url=BASE) as client:
            viewer = api_support.make_user(app, "viewer@example.com")
            staff = api_support.make_user(app, "staff@example.com", staff=True)
            inactive = api_support.make_user(app, "inactive@example.com", active=False)
            cookies = {"anonymous": ""}
            for role, account in (("viewer", viewer), ("staff", staff)):
                r = client.post(
                    "/users/login/",
                    json={"email": account.email, "password": account.password},
                    headers={"Origin": BASE},
                )
                assert r.status_code == 200, r.text
                cookies[role] = f"vf_access={r.cookies['vf_access']}"
                client.cookies.clear()
            # The inactive user cannot sign in at all ...
            r = client.post(
                "/users/login/",
                json={"email": inactive.email, "password": inactive.password},
                headers={"Origin": BASE},
            )
            assert r.status_code == 403 and "vf_access" not in r.cookies, r.text
            # ... so their token is forged with the server's own key, valid in every other way.
            token, _ = security.create_token(
                settings.secret_key.get_secret_value(),
                user_id=inactive.id,
                token_type="access",
                now=datetime.now(UTC),
                lifetime=timedelta(minutes=5),
            )
            cookies["inactive"] = f"vf_access={token}"
            ready_video = api_support.put_ready_video(app, minio_server, s3_bucket, media)
            yield World(app, client, cookies, ready_video, media, minio_server, s3_bucket)
    finally:
        app.state.engine.dispose()


def test_the_table_covers_exactly_the_routes_the_app_serves() -> None:
    # The route table needs no database (the matrix below checks it again on the real setup).
    offline = Settings(dev_mode=True, database_url="sqlite://", secret_key="x" * 48)
    app = api_support.build_app(offline)
    try:
        served = route_table(app)
    finally:
        app.state.engine.dispose()
    missing = sorted(served - ROUTES.keys())
    stale = sorted(ROUTES.keys() - served)
    assert not missing, f"routes without an authorization entry in ROUTES: {missing}"
    assert not stale, f"ROUTES entries without a route: {stale}"
    staff_routes = [r for r, rule in ROUTES.items() if rule.access is Access.STAFF]
    assert len(staff_routes) >= 10, staff_routes


def test_every_route_answers_every_role_as_the_table_says(world: World) -> None:
    served = route_table(world.app)
    assert served == ROUTES.keys()
    wrong: list[str] = []
    checked = 0
    for (method, path), rule in sorted(ROUTES.items()):
        for role in ROLES:
            params, kwargs = rule.prepare(world)
            if rule.form:
                kwargs = {**kwargs, **upload(world)}
            headers = {"Origin": BASE}
            if world.cookies[role]:
                headers["Cookie"] = world.cookies[role]
            r = world.client.request(method, path.format(**params), headers=headers, **kwargs)
            world.client.cookies.clear()  # what the response set must not leak into the next role
            checked += 1
            want = expected(rule, role)
            if r.status_code != want:
                wrong.append(
                    f"{method} {path} as {role}: {r.status_code} != {want}: {r.text[:120]}"
                )
    print(f"authorization matrix: {len(ROUTES)} routes x {len(ROLES)} roles = {checked} requests")
    assert not wrong, f"{len(wrong)} of {checked} requests answered unexpectedly:\n" + "\n".join(
        wrong
    )
