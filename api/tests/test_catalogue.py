"""`/content/` for the unchanged client, which cannot page: the whole catalogue, streamed; opt-in
paging and a deployment's cap name the next page with the request's filters."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI
from videoflix_api.config import Settings
from videoflix_api.routes.videos import json_array
from videoflix_core.db import Video

from .conftest import build_app, live_login, make_user, serve

TOTAL = 130  # well past the 50 a page used to hold


def fill(app: FastAPI, count: int = TOTAL) -> list[int]:
    """`count` videos, newest last; every third is drama, a few titles with non-ASCII text."""
    start = datetime(2025, 1, 1, tzinfo=UTC)
    with app.state.sessionmaker() as session:
        videos = [
            Video(
                title=f"Vidéo {i} / 日本" if i % 10 == 0 else f"Video {i}",
                description="",
                category="drama" if i % 3 == 0 else "comedy",
                # Pairs share a timestamp: the order must break ties by id.
                created_at=start + timedelta(minutes=i // 2),
                converted_files={"120p": {"height": 120, "file": f"videos/{i}/120p/video.mp4"}}
                if i % 2
                else {},
                processing_state="ready" if i % 2 else "pending",
                source_key=f"videos/{i}/source/a.mp4",  # viewers only see videos with a source
            )
            for i in range(count)
        ]
        session.add_all(videos)
        session.commit()
        return [v.id for v in videos]


def newest_first(ids: list[int]) -> list[int]:
    return list(reversed(ids))  # created_at and id both grow with i


def test_json_array() -> None:
    assert b"".join(json_array([])) == b"[]"
    assert b"".join(json_array([b"1", b'"a"'])) == b'[1,"a"]'
    chunks = list(json_array((b"x" * 10 for _ in range(100)), chunk_bytes=64))
    assert len(chunks) > 10 and max(len(c) for c in chunks) < 64 + 11
    assert json.loads(b"".join(chunks).replace(b"x" * 10, b"0")) == [0] * 100


@pytest.fixture
def small_batches(settings: Settings) -> Iterator[FastAPI]:
    # Batches of 7 rows: the stream crosses many batch boundaries, including inside a tie.
    application = build_app(settings.model_copy(update={"content_stream_batch": 7}))
    yield application
    application.state.engine.dispose()


def test_the_whole_catalogue_is_streamed(small_batches: FastAPI) -> None:
    ids = fill(small_batches)
    with serve(small_batches) as url:
        cookies = live_login(url, make_user(small_batches, "all@example.com"))
        headers = {"Cookie": f"vf_access={cookies['vf_access']}"}

        whole = httpx.get(f"{url}/content/", headers=headers)

        assert whole.status_code == 200
        assert whole.headers["content-type"] == "application/json"
        # Written while it is read, so no length is known up front.
        assert whole.headers.get("transfer-encoding") == "chunked"
        assert "content-length" not in whole.headers
        assert "x-next-cursor" not in whole.headers and "link" not in whole.headers
        items = whole.json()
        assert [v["id"] for v in items] == newest_first(ids)
        # Byte for byte what a page of the list holds: the same items, the same JSON.
        page = httpx.get(f"{url}/content/", params={"limit": 1000}, headers=headers)
        assert page.headers["content-length"] and page.content == whole.content

        drama = httpx.get(f"{url}/content/", params={"category": "drama"}, headers=headers)
        assert [v["id"] for v in drama.json()] == [
            i for n, i in zip(reversed(range(TOTAL)), newest_first(ids), strict=True) if n % 3 == 0
        ]
        empty = httpx.get(f"{url}/content/", params={"search": "no such"}, headers=headers)
        assert empty.status_code == 200 and empty.content == b"[]"
        # A NUL byte (which PostgreSQL cannot compare as text) is refused before the stream
        # starts, not a 200 whose body breaks off (what Schemathesis' stateful phase found).
        for name in ("category", "search"):
            refused = httpx.get(f"{url}/content/", params={name: ";\x00O"}, headers=headers)
            assert refused.status_code == 400, refused.text
            assert name in refused.json(), refused.json()


def follow(url: str, first: str, headers: dict[str, str]) -> tuple[list[int], list[str]]:
    """Every id along the `Link: rel="next"` chain, and the links followed (which name the
    configured public base URL, https://testserver, and are fetched from the live server)."""
    seen: list[int] = []
    followed: list[str] = []
    response = httpx.get(first, headers=headers)
    while True:
        assert response.status_code == 200, response.text
        seen += [v["id"] for v in response.json()]
        link = response.headers.get("link")
        if not link:
            return seen, followed
        assert response.headers["x-next-cursor"] in link
        target = link.removeprefix("<").split(">;")[0]
        followed.append(target)
        response = httpx.get(target.replace("https://testserver", url), headers=headers)


def test_paging_links_keep_the_filters(app: FastAPI, live_url: str) -> None:
    ids = fill(app)
    cookies = live_login(live_url, make_user(app, "pager@example.com"))
    headers = {"Cookie": f"vf_access={cookies['vf_access']}"}
    first = f"{live_url}/content/?limit=4&category=drama&processing_state=ready&search=Vid"
    seen, followed = follow(live_url, first, headers)
    assert all(link.startswith("https://testserver/content/?") for link in followed)
    for link in followed:
        for kept in ("category=drama", "processing_state=ready", "search=Vid", "limit=4"):
            assert kept in link, link
    expected = [
        i
        for n, i in zip(reversed(range(TOTAL)), newest_first(ids), strict=True)
        if n % 3 == 0 and n % 2 == 1
    ]
    assert seen == expected, "the links kept the filters: only ready drama, all of it"
    assert len(followed) == (len(expected) - 1) // 4


def test_a_capped_catalogue_names_the_rest(settings: Settings) -> None:
    app = build_app(settings.model_copy(update={"content_max_items": 25, "public_base_url": None}))
    try:
        ids = fill(app)
        with serve(app) as url:
            cookies = live_login(url, make_user(app, "capped@example.com"))
            headers = {"Cookie": f"vf_access={cookies['vf_access']}"}
            capped = httpx.get(f"{url}/content/", headers=headers)
            assert [v["id"] for v in capped.json()] == newest_first(ids)[:25]
            assert 'rel="next"' in capped.headers["link"]

            seen, followed = follow(url, f"{url}/content/?category=comedy", headers)
            comedy = [
                i for n, i in zip(reversed(range(TOTAL)), newest_first(ids), strict=True) if n % 3
            ]
            assert seen == comedy, "nothing skipped, nothing repeated along the links"
            assert followed and all("category=comedy" in link for link in followed)
    finally:
        app.state.engine.dispose()
