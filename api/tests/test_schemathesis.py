"""Property-based requests generated from /openapi.json: no input makes the API answer 5xx."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from schemathesis.checks import not_a_server_error
from videoflix_api.config import Settings

from .conftest import BASE, add_video, build_app, login, make_user

# Bounded: every operation gets a few examples, the whole run stays around a minute.
MAX_EXAMPLES = 12


def test_no_input_causes_a_server_error(settings: Settings) -> None:
    # Limits out of the way: a throttled request would exercise nothing.
    unlimited = {
        name: 10**6
        for name in (
            "rate_limit_login",
            "rate_limit_register",
            "rate_limit_reset",
            "rate_limit_email_exists",
        )
    }
    app = build_app(settings.model_copy(update=unlimited))
    try:
        with TestClient(app, base_url=BASE) as client:
            fuzz_all(app, client)
    finally:
        app.state.engine.dispose()


def fuzz_all(app: FastAPI, client: TestClient) -> None:
    add_video(app, title="Seed", category="tests")
    login(client, make_user(app, "fuzz@example.com", staff=True))
    access = client.cookies.get("vf_access")
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures: list[str] = []
    checked = 0
    headers = {"Authorization": f"Bearer {access}"}
    for result in schema.get_all_operations():
        operation = result.ok()
        try:
            fuzz(operation, headers, failures)
        except Exception as exc:  # collect all, report together
            failures.append(f"{operation.method.upper()} {operation.path}: {exc!s:.300}")
        checked += 1
    assert checked >= 25
    assert failures == [], "\n".join(failures)


@pytest.mark.parametrize("path", ["/users/login/", "/users/register/", "/content/add-favorite/"])
def test_garbage_bodies_are_400_not_500(client: TestClient, path: str) -> None:
    for body in (b"", b"null", b"[]", b'{"email": 5}', b"\xff\xfe", b'{"video_id": 1e400}'):
        r = client.post(path, content=body, headers={"content-type": "application/json"})
        assert r.status_code in (400, 401, 403), (body, r.status_code, r.text)


def fuzz(operation: Any, headers: dict[str, str], failures: list[str]) -> None:
    """Send MAX_EXAMPLES generated requests to one operation as a staff user.

    Without a cluster the dispatcher is unavailable, so uploads exercise the "mark the video
    error" path rather than creating CRs (those are tested in test_staff.py).
    """

    @given(case=operation.as_strategy())
    @hsettings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        response = case.call(base_url=BASE, headers=headers)
        if response.status_code >= 500:
            failures.append(
                f"{case.method} {case.formatted_path} -> {response.status_code}: "
                f"{response.text[:200]}"
            )
        case.validate_response(response, checks=[not_a_server_error])

    run()
