"""The outbox of the row-then-CR dual write, against real PostgreSQL, MinIO and the control plane.

- The API process dies between committing an upload's row and creating its CR (the test-only
  fault hook): the next process's sweeper creates the missing CR within the bound.
- Two API instances sweeping one database hand each owed row over exactly once.
- A video whose upload never completed expires with its multipart upload; an incomplete
  multipart upload no row knows is aborted too.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session, sessionmaker
from videoflix_api.config import Settings
from videoflix_api.dispatch import CrashBeforeHandOver, KubernetesDispatcher, UnavailableDispatcher
from videoflix_api.main import create_app
from videoflix_api.services import outbox
from videoflix_api.services import videos as svc
from videoflix_api.services.accounts import create_user
from videoflix_api.services.storage import S3Storage
from videoflix_core import storage as keys
from videoflix_core.db import Video
from videoflix_core.db.migrate import upgrade

from tests.cluster.fixtures import Kube
from tests.fixtures.minio import MinioServer
from tests.fixtures.procs import free_port, stop, wait_until

# The tests on the control plane get the `cluster` marker from their `kube` fixture.
pytestmark = [pytest.mark.faults]

FRONTEND = "https://app.videoflix.test"
PASSWORD = "correct horse battery"
CR_PATH = "/apis/videoflix.io/v1alpha1/namespaces/{ns}/videotranscodes"
# What the sweeper must take at most to hand over a row the dead process left owed.
HANDOVER_BOUND = 20.0


def api_env(
    database_url: str, minio: MinioServer, bucket: str, kube: Kube, ns: str
) -> dict[str, str]:
    return {
        **os.environ,
        **minio.env(bucket),
        "VIDEOFLIX_DEV_MODE": "true",  # the fault hook is refused outside dev mode
        "VIDEOFLIX_DATABASE_URL": database_url,
        "VIDEOFLIX_KUBECONFIG": kube.kubeconfig,
        "VIDEOFLIX_NAMESPACE": ns,
        "VIDEOFLIX_FRONTEND_URL": FRONTEND,
        "VIDEOFLIX_OUTBOX_SWEEP_INTERVAL_SECONDS": "0.5",
        "VIDEOFLIX_OUTBOX_GRACE_SECONDS": "1",
        "VIDEOFLIX_LOG_JSON": "true",
    }


class Api:
    def __init__(self, env: dict[str, str], log: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log
        command = [sys.executable, "-m", "videoflix_api", "serve", "--host", "127.0.0.1"]
        self.proc = subprocess.Popen(
            [*command, "--port", str(self.port)],
            env=env,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        wait_until(lambda: self.up() or self.proc.poll() is not None, "the API to start", 60)
        assert self.proc.poll() is None, self.log()

    def up(self) -> bool:
        try:
            return httpx.get(self.url + "/health/", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def login(self, email: str) -> dict[str, str]:
        r = httpx.post(
            self.url + "/users/login/",
            json={"email": email, "password": PASSWORD},
            headers={"Origin": FRONTEND},
        )
        assert r.status_code == 200, r.text
        jar: SimpleCookie = SimpleCookie()
        for header in r.headers.get_list("set-cookie"):
            jar.load(header)
        return {name: morsel.value for name, morsel in jar.items()}


@pytest.fixture
def sessions(database_url: str) -> Iterator[sessionmaker[Session]]:
    upgrade(database_url)
    engine = create_engine(database_url)
    yield sessionmaker(engine, expire_on_commit=False)
    engine.dispose()


def transcodes(kube: Kube, ns: str) -> list[str]:
    items = kube.client.get(CR_PATH.format(ns=ns)).get("items", [])
    return sorted(item["metadata"]["name"] for item in items)


def test_a_crash_between_commit_and_create_is_handed_over_by_the_next_process(
    database_url: str,
    sessions: sessionmaker[Session],
    minio_server: MinioServer,
    s3_bucket: str,
    kube: Kube,
    kube_namespace: str,
    tmp_path: Path,
) -> None:
    with sessions() as session:
        create_user(session, "staff@example.com", PASSWORD, staff=True)
        session.commit()
    env = api_env(database_url, minio_server, s3_bucket, kube, kube_namespace)
    log = tmp_path / "api.log"

    crashing = Api({**env, "VIDEOFLIX_FAULT_CRASH_AFTER_COMMIT": "true"}, log)
    cookies = crashing.login("staff@example.com")
    with pytest.raises(httpx.HTTPError):  # the process dies before it answers
        httpx.post(
            crashing.url + "/videos/upload/",
            data={"title": "Crashed", "description": "", "category": ""},
            files={"file": ("a.mp4", b"\0" * 4096, "video/mp4")},
            cookies=cookies,
            headers={"Origin": FRONTEND},
            timeout=30,
        )
    assert crashing.proc.wait(timeout=30) == CrashBeforeHandOver.EXIT_CODE, crashing.log()

    with sessions() as session:
        (row,) = session.scalars(select(Video)).all()
    # The fault struck where it should: committed with its source and owed, no CR.
    assert row.source_key and row.processing_state == "pending"
    assert row.dispatch_due_at is not None
    assert transcodes(kube, kube_namespace) == []

    restarted = Api(env, log)
    try:
        started = time.monotonic()

        def handed_over() -> bool:
            with sessions() as session:
                owed = session.scalars(select(Video.id).where(Video.dispatch_due_at.is_not(None)))
                stuck = owed.all()
            # Every row has its CR and none is owed any more (the mark is cleared after create).
            return stuck == [] and transcodes(kube, kube_namespace) == [f"video-{row.id}"]

        try:
            wait_until(handed_over, "the sweeper to create the missing CR", HANDOVER_BOUND)
        except TimeoutError as exc:
            raise AssertionError(restarted.log()) from exc
        took = time.monotonic() - started
        with sessions() as session:
            again = session.get_one(Video, row.id)
        assert again.processing_error is None
        cr = kube.client.get(f"{CR_PATH.format(ns=kube_namespace)}/video-{row.id}")
        assert cr["spec"]["source"] == {"bucket": s3_bucket, "key": row.source_key}
        assert cr["spec"]["transcodeGeneration"] == row.transcode_generation
        print(f"\nhand-over after the restart took {took:.2f} s")
    finally:
        stop(restarted.proc)


class CountingDispatcher:
    """The real Kubernetes dispatcher, counting hand-overs per video (slowed a little, so that
    two sweepers running at once overlap on the same rows)."""

    def __init__(self, inner: KubernetesDispatcher, counts: Counter[int], lock: threading.Lock):
        self.inner, self.counts, self.lock = inner, counts, lock

    def submit(self, video: Video) -> None:
        with self.lock:
            self.counts[video.id] += 1
        time.sleep(0.05)  # widens the race window; not a wait for a condition
        self.inner.submit(video)

    def cancel(self, video_id: int) -> None:
        self.inner.cancel(video_id)


def api_settings(
    database_url: str, minio: MinioServer, bucket: str, kube: Kube | None, ns: str
) -> Settings:
    return Settings(
        dev_mode=True,
        secret_key=secrets.token_urlsafe(48),
        database_url=database_url,
        s3_endpoint_url=minio.endpoint_url,
        s3_bucket=bucket,
        s3_access_key_id=minio.access_key,
        s3_secret_access_key=minio.secret_key,
        s3_region=minio.region,
        kubeconfig=kube.kubeconfig if kube else None,
        namespace=ns,
        outbox_sweep_interval_seconds=0,
        outbox_grace_seconds=1,
        outbox_batch=10,
    )


def test_two_sweepers_on_one_database_hand_each_row_over_once(
    database_url: str,
    sessions: sessionmaker[Session],
    minio_server: MinioServer,
    s3_bucket: str,
    kube: Kube,
    kube_namespace: str,
) -> None:
    settings = api_settings(database_url, minio_server, s3_bucket, kube, kube_namespace)
    counts: Counter[int] = Counter()
    lock = threading.Lock()
    apps = [
        create_app(
            settings,
            configure_logs=False,
            dispatcher=CountingDispatcher(
                KubernetesDispatcher.from_settings(settings), counts, lock
            ),
        )
        for _ in range(2)
    ]
    owed_at = outbox.utcnow() - timedelta(seconds=30)
    with sessions() as session:
        rows = [Video(title=f"v{i}") for i in range(25)]  # more than one batch each
        session.add_all(rows)
        session.flush()
        for video in rows:
            video.source_key, video.dispatch_due_at = keys.source_key(video.id, "a.mp4"), owed_at
        session.commit()
        ids = sorted(v.id for v in rows)

    barrier = threading.Barrier(2)
    results: dict[int, list[outbox.SweepResult]] = {0: [], 1: []}

    def sweep(n: int, app: Any) -> None:
        barrier.wait()
        while True:  # rounds until nothing is owed, as the periodic task would do
            done = outbox.sweep(
                app.state.sessionmaker, app.state.storage, app.state.dispatcher, settings
            )
            results[n].append(done)
            if not done.handed_over:
                return

    threads = [threading.Thread(target=sweep, args=(n, app)) for n, app in enumerate(apps)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=80)
    for app in apps:
        app.state.engine.dispose()

    per_sweeper = [[i for r in results[n] for i in r.handed_over] for n in (0, 1)]
    handed = sorted(per_sweeper[0] + per_sweeper[1])
    assert handed == ids, "each row handed over by exactly one sweeper"
    assert set(counts) == set(ids) and set(counts.values()) == {1}, counts
    assert all(per_sweeper), "both sweepers took part"
    print(f"\nhanded over by each sweeper: {[len(p) for p in per_sweeper]}")
    assert transcodes(kube, kube_namespace) == sorted(f"video-{i}" for i in ids)
    with sessions() as session:
        assert session.scalars(select(Video).where(Video.dispatch_due_at.is_not(None))).all() == []


def test_abandoned_uploads_expire_with_their_multipart_upload(
    database_url: str,
    sessions: sessionmaker[Session],
    minio_server: MinioServer,
    s3_bucket: str,
) -> None:
    settings = api_settings(database_url, minio_server, s3_bucket, None, "videoflix")
    storage = S3Storage(settings)
    s3 = minio_server.client()
    with sessions() as session:
        abandoned = svc.create_video(
            session, title="Abandoned", description="", category="", created_by=None
        )
        key = f"videos/{abandoned.id}/source/big.mp4"
        abandoned.upload_id, abandoned.upload_key = storage.start_multipart(key, "video/mp4"), key
        kept = Video(title="Kept", source_key=f"videos/{abandoned.id + 1}/source/a.mp4")
        session.add(kept)
        session.commit()
    # The part of an upload that was started, whose row is gone (e.g. deleted by hand).
    orphan = s3.create_multipart_upload(Bucket=s3_bucket, Key="videos/999999/source/o.mp4")
    s3.upload_part(
        Bucket=s3_bucket,
        Key="videos/999999/source/o.mp4",
        UploadId=orphan["UploadId"],
        PartNumber=1,
        Body=b"x" * 1024,
    )
    # Not under videos/: not ours to abort.
    foreign = s3.create_multipart_upload(Bucket=s3_bucket, Key="other/x.bin")

    def uploads() -> set[str]:
        return {
            u["UploadId"] for u in s3.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", [])
        }

    assert len(uploads()) == 3
    # No CR exists for a video without a source; cancelling one is only attempted (and logged).
    dispatcher = UnavailableDispatcher("no cluster in this test")
    now = outbox.utcnow()

    young = outbox.sweep(sessions, storage, dispatcher, settings, now=now)
    assert (young.expired, young.aborted) == ([], []), "nothing is old enough yet"

    later = now + timedelta(seconds=settings.upload_expiry_seconds + 60)
    old = outbox.sweep(sessions, storage, dispatcher, settings, now=later)
    assert old.expired == [abandoned.id]
    assert old.aborted == [orphan["UploadId"]]  # the row's own upload went with the row
    assert uploads() == {foreign["UploadId"]}
    with sessions() as session:
        assert [v.title for v in session.scalars(select(Video))] == ["Kept"]
    s3.abort_multipart_upload(Bucket=s3_bucket, Key="other/x.bin", UploadId=foreign["UploadId"])
