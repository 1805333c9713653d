"""What the outbox changes for users: viewers never see a video whose source has not arrived, and
staff may retry a `pending` video whose hand-over stays owed (the sweeper itself: tests/faults)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import ValidationError
from videoflix_api.config import Settings
from videoflix_api.services import outbox
from videoflix_core.db import Video

from .conftest import add_video, login, make_user

ORIGIN = {"Origin": "https://app.videoflix.test"}


def test_viewers_never_see_a_video_without_a_source_and_staff_do(
    app: FastAPI, client: TestClient
) -> None:
    ready = add_video(app, title="Arrived", category="drama")
    uploading = add_video(app, title="Uploading", source_key=None, category="horror")

    login(client, make_user(app, "viewer@example.com"))
    assert [v["id"] for v in client.get("/videos/").json()["results"]] == [ready]
    assert [v["id"] for v in client.get("/content/").json()] == [ready]
    assert [v["id"] for v in client.get("/content/", params={"limit": 10}).json()] == [ready]
    assert client.get(f"/videos/{uploading}/").status_code == 404
    assert client.get(f"/videos/{ready}/").status_code == 200
    # Nor its category: a filter chip for a category with nothing to show.
    assert client.get("/videos/categories/").json() == {"categories": ["drama"]}

    login(client, make_user(app, "staff@example.com", staff=True))
    assert [v["id"] for v in client.get("/videos/").json()["results"]] == [uploading, ready]
    assert [v["id"] for v in client.get("/content/").json()] == [uploading, ready]
    assert [v["id"] for v in client.get("/content/", params={"limit": 10}).json()] == [
        uploading,
        ready,
    ]
    assert client.get(f"/videos/{uploading}/").status_code == 200
    assert client.get("/videos/categories/").json() == {"categories": ["drama", "horror"]}


def test_staff_retry_a_pending_video_only_once_its_hand_over_is_overdue(
    app: FastAPI, client: TestClient
) -> None:
    grace = timedelta(seconds=app.state.settings.outbox_grace_seconds)
    fresh = add_video(app, dispatch_due_at=datetime.now(UTC))
    overdue = add_video(app, dispatch_due_at=datetime.now(UTC) - grace - timedelta(seconds=5))
    handed_over = add_video(app, processing_state="processing")
    login(client, make_user(app, "staff@example.com", staff=True))

    for refused in (fresh, handed_over):
        r = client.post(f"/videos/{refused}/retry/", headers=ORIGIN)
        assert r.status_code == 409, r.text
    r = client.post(f"/videos/{overdue}/retry/", headers=ORIGIN)
    # Accepted: a new generation handed over again (no cluster here, so it fails visibly).
    assert r.status_code == 200, r.text
    with app.state.sessionmaker() as session:
        row = session.get_one(Video, overdue)
        assert row.transcode_generation == 1
        assert row.processing_state == "error" and "dispatcher unavailable" in (
            row.processing_error or ""
        )
        assert row.dispatch_due_at is None  # refused: staff retry, the sweeper does not loop
        assert session.get_one(Video, fresh).transcode_generation == 0


@pytest.mark.parametrize(
    ("state", "due_ago", "source", "allowed"),
    [
        ("error", None, "x.mp4", True),
        ("pending", 120, "x.mp4", True),
        ("pending", 10, "x.mp4", False),  # the request that owes it may still be doing it
        ("pending", None, "x.mp4", False),  # handed over, waiting for the operator
        ("processing", 120, "x.mp4", False),
        ("error", None, None, False),
    ],
)
def test_retry_rule(state: str, due_ago: int | None, source: str | None, allowed: bool) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    due = None if due_ago is None else now - timedelta(seconds=due_ago)
    video = Video(processing_state=state, dispatch_due_at=due, source_key=source)
    refusal = outbox.retry_refusal(video, now, timedelta(seconds=60))
    assert (refusal is None) is allowed, refusal


def test_only_postgresql_claims_rows_with_skip_locked() -> None:
    assert outbox.locks_rows("postgresql")
    assert not outbox.locks_rows("sqlite")


def test_the_crash_fault_hook_is_refused_outside_dev_mode() -> None:
    production = {
        "secret_key": "s" * 48,
        "public_base_url": "https://api.videoflix.test",
        "database_url": "sqlite://",
    }
    with pytest.raises(ValidationError, match="FAULT_CRASH_AFTER_COMMIT"):
        Settings(**production, fault_crash_after_commit=True)
    assert Settings(**production).fault_crash_after_commit is False
    dev = Settings(dev_mode=True, database_url="sqlite://", fault_crash_after_commit=True)
    assert dev.fault_crash_after_commit is True  # tests/faults/test_outbox.py uses it
