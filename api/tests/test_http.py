"""Cross-cutting HTTP behaviour: CSRF, CORS, rate limits, errors, operations endpoints, logs."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from videoflix_api.config import Settings
from videoflix_api.observability import JsonFormatter

from .conftest import BASE, PASSWORD, Account, build_app, login, make_user

FRONTEND = "https://app.videoflix.test"


def test_csrf_refuses_cookie_requests_from_foreign_origins(
    viewer_client: TestClient, app: FastAPI
) -> None:
    from .conftest import add_video

    video_id = add_video(app)
    body = {"video_id": video_id}
    del viewer_client.headers["origin"]  # each request below names its own source
    r = viewer_client.post(
        "/content/add-favorite/", json=body, headers={"Origin": "https://evil.example"}
    )
    assert r.status_code == 403 and r.json()["detail"].startswith("CSRF Failed")
    r = viewer_client.post(
        "/content/add-favorite/", json=body, headers={"Referer": "https://evil.example/page"}
    )
    assert r.status_code == 403
    r = viewer_client.post("/content/add-favorite/", json=body, headers={"Origin": "null"})
    assert r.status_code == 403
    # The frontend's origin and our own pass.
    assert (
        viewer_client.post(
            "/content/add-favorite/", json=body, headers={"Origin": FRONTEND}
        ).status_code
        == 200
    )
    assert (
        viewer_client.post(
            "/content/add-favorite/", json=body, headers={"Origin": BASE}
        ).status_code
        == 200
    )
    # Cookies with neither Origin nor Referer: the source cannot be told, so it is refused.
    assert viewer_client.post("/content/add-favorite/", json=body).status_code == 403
    # Safe methods are never refused.
    assert (
        viewer_client.get("/content/", headers={"Origin": "https://evil.example"}).status_code
        == 200
    )


def test_csrf_refuses_login_from_a_foreign_origin(client: TestClient, user: Account) -> None:
    # Login CSRF: another site must not sign the visitor in to an account of its choosing.
    r = client.post(
        "/users/login/",
        json={"email": user.email, "password": PASSWORD},
        headers={"Origin": "https://elsewhere.example"},
    )
    assert r.status_code == 403 and "set-cookie" not in r.headers
    # Without cookies, a client naming no origin (an API client, a script) signs in.
    del client.headers["origin"]
    r = client.post("/users/login/", json={"email": user.email, "password": PASSWORD})
    assert r.status_code == 200


def test_cors_allows_the_frontend_with_credentials_and_x_retry(client: TestClient) -> None:
    r = client.options(
        "/users/refresh/",
        headers={
            "Origin": FRONTEND,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-retry",
        },
    )
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == FRONTEND
    assert r.headers["access-control-allow-credentials"] == "true"
    assert "x-retry" in r.headers["access-control-allow-headers"].lower()
    r = client.get("/health/", headers={"Origin": FRONTEND})
    assert r.headers["access-control-allow-origin"] == FRONTEND
    r = client.options(
        "/users/refresh/",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in r.headers


def test_login_is_rate_limited_with_retry_after(settings: Settings) -> None:
    app = build_app(settings.model_copy(update={"rate_limit_login": 3}))
    try:
        with TestClient(app, base_url=BASE) as client:
            for _ in range(3):
                r = client.post(
                    "/users/login/", json={"email": "a@example.com", "password": "wrong password"}
                )
                assert r.status_code == 401
            r = client.post(
                "/users/login/", json={"email": "a@example.com", "password": "wrong password"}
            )
            assert r.status_code == 429
            assert 1 <= int(r.headers["retry-after"]) <= settings.rate_limit_window_seconds
            assert r.json()["detail"].startswith("Request was throttled.")
            assert 'videoflix_rate_limited_total{scope="login"} 1.0' in client.get("/metrics").text
    finally:
        app.state.engine.dispose()


@pytest.mark.parametrize(
    ("path", "body", "setting"),
    [
        (
            "/users/register/",
            {"email": "x@example.com", "password": PASSWORD, "confirm_password": PASSWORD},
            "rate_limit_register",
        ),
        ("/users/forgot-password/", {"email": "x@example.com"}, "rate_limit_reset"),
        (
            "/users/reset-password/",
            {"uid": 1, "token": "t", "new_password": PASSWORD},
            "rate_limit_reset",
        ),
    ],
)
def test_register_and_reset_are_rate_limited(
    settings: Settings, path: str, body: dict[str, Any], setting: str
) -> None:
    app = build_app(settings.model_copy(update={setting: 2}))
    try:
        with TestClient(app, base_url=BASE) as client:
            codes = [client.post(path, json=body).status_code for _ in range(3)]
            assert codes[:2] != [429, 429] and codes[2] == 429
    finally:
        app.state.engine.dispose()


def test_error_shapes(client: TestClient) -> None:
    r = client.get("/no/such/path/")
    assert r.status_code == 404 and r.json() == {"detail": "Not found."}
    r = client.delete("/users/login/")
    assert r.status_code == 405 and r.json() == {"detail": 'Method "DELETE" not allowed.'}
    r = client.post("/users/register/", json=["not", "an", "object"])
    assert r.status_code == 400 and r.json() == {"non_field_errors": ["Expected a JSON object."]}


def test_nul_bytes_are_bad_input_not_server_errors(viewer_client: TestClient) -> None:
    r = viewer_client.get("/users/email-exists/", params={"email": "a\x00b@example.com"})
    assert r.status_code == 400
    assert r.json() == {"detail": "Invalid characters or values in the input."}
    r = viewer_client.get("/videos/", params={"category": "\x00"})
    assert r.status_code == 400


def test_health_ready_metrics(client: TestClient) -> None:
    for path in ("/health", "/health/", "/healthz"):
        assert client.get(path).json() == {"status": "ok"}
    r = client.get("/ready")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "checks": {"database": "ok", "storage": "ok"}}
    client.get("/content/")
    text = client.get("/metrics").text
    assert 'videoflix_http_requests_total{method="GET",route="/content/",status="401"} 1.0' in text
    assert 'videoflix_auth_failures_total{reason="missing"}' in text
    assert "videoflix_http_request_duration_seconds_bucket" in text


def test_ready_reports_unreachable_dependencies(settings: Settings) -> None:
    app = build_app(
        settings.model_copy(
            update={
                "database_url": "postgresql+psycopg://nobody@127.0.0.1:1/none",
                "s3_bucket": "no-such-bucket",
            }
        )
    )
    with TestClient(app, base_url=BASE) as client:
        r = client.get("/ready")
        assert r.status_code == 503
        assert r.json()["checks"] == {"database": "unavailable", "storage": "unavailable"}
        assert client.get("/healthz").status_code == 200


def test_request_id_and_json_logs(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="videoflix_api.access")
    r = client.get("/health/", headers={"X-Request-ID": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    generated = client.get("/health/", headers={"X-Request-ID": "bad id\nwith newline"})
    assert generated.headers["x-request-id"] != "bad id\nwith newline"
    assert len(generated.headers["x-request-id"]) == 32

    record = next(r for r in caplog.records if getattr(r, "path", None) == "/health/")
    line = json.loads(JsonFormatter().format(record))
    assert line["status"] == 200 and line["route"] == "/health/"
    assert line["method"] == "GET" and "duration_ms" in line
    assert line["message"] == "GET /health/ 200"


def test_log_lines_carry_the_request_id(client: TestClient) -> None:
    import io

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("videoflix_api")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        client.post(
            "/users/login/",
            json={"email": "a@example.com", "password": "nope nope"},
            headers={"X-Request-ID": "req-42"},
        )
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    access = [line for line in lines if line["logger"] == "videoflix_api.access"]
    assert access and all(line["request_id"] == "req-42" for line in access)
    assert access[-1]["status"] == 401 and access[-1]["route"] == "/users/login/"


def test_openapi_documents_the_contract(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    for path in (
        "/users/login/",
        "/users/refresh/",
        "/content/",
        "/content/video-url/{video_id}/",
        "/content/add-favorite/",
        "/users/email-exists/",
        "/health/",
    ):
        assert path in schema["paths"], path
    assert "CSRF" in schema["info"]["description"]
    assert client.get("/docs").status_code == 200


def test_staff_login_has_is_staff(app: FastAPI, client: TestClient) -> None:
    body = login(client, make_user(app, "boss@example.com", staff=True))
    assert body["is_staff"] is True


def test_the_collector_is_tuned_only_while_the_app_serves(app: FastAPI) -> None:
    import gc

    from videoflix_api.main import SERVING_GC_THRESHOLDS

    before = gc.get_threshold()
    with TestClient(app, base_url=BASE):
        assert gc.get_threshold() == SERVING_GC_THRESHOLDS
        assert gc.get_freeze_count() > 0  # start-up's objects are out of the collector's way
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
