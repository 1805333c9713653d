"""Every corpus entry through the whole pipeline, in both modes, checked with ffprobe.

Each mode submits the whole corpus at once (bounded parallelism) and then checks every entry, so
one run names every entry that fails and why instead of stopping at the first.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session
from videoflix_api.embedded.dispatcher import LocalDispatcher
from videoflix_api.embedded.media import UrlSigner
from videoflix_api.embedded.storage import LocalStorage
from videoflix_core.db import Video
from videoflix_core.db.migrate import upgrade
from videoflix_core.storage import source_key
from videoflix_core.transcode import Strategy

from tests.corpus.checks import problems, report
from tests.corpus.sources import BY_ID, ENTRIES
from tests.operator.conftest import Platform

FINAL = ("ready", "error")
DEADLINE_SECONDS = 420  # the whole corpus, one mode; measured well below (see the report line)


def _rows(engine: Any, ids: list[int]) -> dict[int, Video]:
    with Session(engine, expire_on_commit=False) as db:
        return {v.id: v for v in db.query(Video).filter(Video.id.in_(ids))}


def _wait_all(poll: Callable[[], bool], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not poll():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.5)


def test_corpus_embedded(corpus: dict[str, Path], tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    upgrade(url)
    engine = create_engine(url)
    storage = LocalStorage(tmp_path / "media", UrlSigner(b"k" * 32, "http://127.0.0.1:1"))
    video_of: dict[str, int] = {}
    with Session(engine, expire_on_commit=False) as db:
        for entry in ENTRIES:
            video = Video(title=entry.id, converted_files={})
            db.add(video)
            db.flush()
            key = source_key(video.id, entry.filename)
            target = storage.path(key)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(corpus[entry.id].read_bytes())
            video.source_key = key
            video.transcode_generation = 1
            video_of[entry.id] = video.id
        db.commit()
        videos = list(db.query(Video))
    dispatcher = LocalDispatcher(storage, engine, tmp_path / "state", max_parallel=2)
    started = time.monotonic()
    dispatcher.start(resume=False)
    try:
        for video in videos:
            dispatcher.submit(video)
        ids = list(video_of.values())
        _wait_all(
            lambda: all(v.processing_state in FINAL for v in _rows(engine, ids).values()),
            "every corpus video to end ready or error",
            DEADLINE_SECONDS,
        )
    finally:
        dispatcher.stop()
    seconds = time.monotonic() - started
    rows = _rows(engine, list(video_of.values()))
    engine.dispose()
    failures = {}
    for entry_id, vid in video_of.items():
        row = rows[vid]
        found = problems(
            BY_ID[entry_id],
            corpus[entry_id],
            row.processing_state,
            row.processing_error,
            row.converted_files,
            storage.path,
        )
        if found:
            failures[entry_id] = found
    sys.stderr.write(f"\nembedded: {len(ENTRIES)} corpus entries in {seconds:.1f} s\n")
    assert not failures, report(failures, seconds, "embedded")


def _cr_agrees(cr: dict[str, Any], row: Video) -> bool:
    """The CR status and the videos row tell the same story (phase, rungs and sizes, message)."""
    status = cr.get("status") or {}
    phase = {"Succeeded": "ready", "Failed": "error"}.get(status.get("phase", ""))
    if phase is None or phase != row.processing_state:
        return False
    outputs = {
        name: (r["output"]["width"], r["output"]["height"], r["output"]["file"])
        for name, r in (status.get("renditions") or {}).items()
        if r.get("output")
    }
    files = {n: (i["width"], i["height"], i["file"]) for n, i in row.converted_files.items()}
    if outputs != files:
        return False
    return phase == "ready" or (row.processing_error or "") == (status.get("message") or "")


@pytest.mark.cluster
def test_corpus_operator(
    corpus: dict[str, Path], make_platform: Callable[..., Platform], tmp_path: Path
) -> None:
    p = make_platform(max_running_jobs="4")
    started = time.monotonic()
    # SinglePass (one `ladder` Job per video): the embedded run covers the per-rendition command,
    # this one the ladder command, and one decode per source keeps the 4K sources affordable.
    submitted = {
        entry.id: p.transcode(corpus[entry.id], strategy=Strategy.SINGLE_PASS) for entry in ENTRIES
    }
    crs: dict[str, dict[str, Any]] = {}

    def converged() -> bool:
        for entry_id, (vid, name) in submitted.items():
            if entry_id in crs:
                continue
            cr = p.cr(name)
            if cr is not None and _cr_agrees(cr, p.video(vid)):
                crs[entry_id] = cr
        if p.operator.proc is not None and p.operator.proc.poll() is not None:
            raise AssertionError(f"the operator died:\n{p.operator.log()[-4000:]}")
        return len(crs) == len(submitted)

    try:
        _wait_all(converged, "every CR to end and agree with its videos row", DEADLINE_SECONDS)
    except AssertionError as exc:
        pending = {
            e: (p.cr(n) or {}).get("status") for e, (_, n) in submitted.items() if e not in crs
        }
        raise AssertionError(
            f"{exc}; not converged: {pending}\n{p.operator.log()[-3000:]}"
        ) from None
    seconds = time.monotonic() - started

    downloads = tmp_path / "outputs"

    def fetch(key: str) -> Path:
        local = downloads / key
        local.parent.mkdir(parents=True, exist_ok=True)
        p.minio.client().download_file(p.bucket, key, str(local))
        return local

    failures = {}
    for entry_id, (vid, _) in submitted.items():
        row = p.video(vid)
        found = problems(
            BY_ID[entry_id],
            corpus[entry_id],
            row.processing_state,
            row.processing_error,
            row.converted_files,
            fetch,
        )
        if found:
            failures[entry_id] = found
    sys.stderr.write(f"\noperator: {len(ENTRIES)} corpus entries in {seconds:.1f} s\n")
    assert not failures, report(failures, seconds, "operator")
