"""Concurrent source replaces: each gets its own transcode generation, the later one wins.

Real PostgreSQL (row locks), MinIO, the control plane (CRs) and, for the running case, the real
operator with the local kubelet running the transcoder.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session
from videoflix_api.config import Settings
from videoflix_api.dispatch import KubernetesDispatcher
from videoflix_api.services import videos as svc
from videoflix_api.services.storage import S3Storage
from videoflix_core import storage
from videoflix_core.db import Video
from videoflix_core.db.migrate import upgrade

from tests.cluster.fixtures import Kube
from tests.fixtures.minio import MinioServer
from tests.operator.conftest import Platform, make_platform, sources  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.faults, pytest.mark.cluster]


def api_settings(
    database_url: str, minio: MinioServer, bucket: str, kube: Kube, namespace: str
) -> Settings:
    return Settings(
        dev_mode=False,
        public_base_url="https://testserver",
        frontend_url="https://app.videoflix.test",
        secret_key=secrets.token_urlsafe(48),
        database_url=database_url,
        s3_endpoint_url=minio.endpoint_url,
        s3_bucket=bucket,
        s3_access_key_id=minio.access_key,
        s3_secret_access_key=minio.secret_key,
        s3_region=minio.region,
        kubeconfig=kube.kubeconfig,
        namespace=namespace,
    )


def replace_concurrently(
    engine: Any, settings: Settings, video_id: int, keys: list[str]
) -> dict[str, int]:
    """Every thread reads the row, then all replace at once: generation each one got, by key."""
    store = S3Storage(settings)
    dispatcher = KubernetesDispatcher.from_settings(settings)
    barrier = threading.Barrier(len(keys))
    got: dict[str, int] = {}
    errors: list[BaseException] = []

    def replace(key: str) -> None:
        try:
            # Not expired on commit: the object keeps the generation this replace wrote.
            with Session(engine, expire_on_commit=False) as session:
                video = session.get_one(Video, video_id)
                session.commit()  # both have read generation N before either writes
                barrier.wait(10)
                svc.set_source(session, store, dispatcher, video, key, 3)
                got[key] = video.transcode_generation
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=replace, args=(k,)) for k in keys]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    return got


def test_concurrent_replaces_get_distinct_generations(
    kube: Kube, kube_namespace: str, minio_server: MinioServer, s3_bucket: str, database_url: str
) -> None:
    upgrade(database_url)
    engine = create_engine(database_url)
    settings = api_settings(database_url, minio_server, s3_bucket, kube, kube_namespace)
    client = minio_server.client()
    with Session(engine) as s:
        video = Video(title="raced", transcode_generation=3, processing_state="ready")
        s.add(video)
        s.commit()
        vid = video.id
    old = storage.source_key(vid, "old.mp4")
    client.put_object(Bucket=s3_bucket, Key=old, Body=b"src")
    with Session(engine) as s:
        s.get_one(Video, vid).source_key = old
        s.commit()
    generation = 3
    # A few rounds: the losers' hand-overs race the winner's in a different order each time.
    for round_ in range(4):
        keys = [storage.source_key(vid, f"new-{round_}-{i}.mp4") for i in range(3)]
        for key in keys:
            client.put_object(Bucket=s3_bucket, Key=key, Body=b"src")

        got = replace_concurrently(engine, settings, vid, keys)

        expected = [generation + 1, generation + 2, generation + 3]
        assert sorted(got.values()) == expected, got  # without the lock: all get generation + 1
        generation += 3
        winner = max(got, key=lambda k: got[k])
        with Session(engine) as s:
            row = s.get_one(Video, vid)
            assert (row.transcode_generation, row.source_key) == (generation, winner)
            # A loser's hand-over may reach the API server after the winner's and be refused
            # (the generation only increases): that must not mark the winner's row failed.
            assert (row.processing_state, row.processing_error) == ("pending", None)
        cr = kube.client.get(
            f"/apis/videoflix.io/v1alpha1/namespaces/{kube_namespace}/videotranscodes/video-{vid}"
        )
        assert (cr["spec"]["transcodeGeneration"], cr["spec"]["source"]["key"]) == (
            generation,
            winner,
        )
        # Each replace deleted the source it superseded: only the winner's object is left.
        assert minio_server.keys(s3_bucket, storage.video_prefix(vid)) == [winner]
    engine.dispose()


def test_replace_during_transcode_keeps_only_the_last_sources_outputs(
    make_platform: Callable[..., Platform],  # noqa: F811
    sources: dict[str, Path],  # noqa: F811
    kube: Kube,
    kube_namespace: str,
    database_url: str,
) -> None:
    platform = make_platform()
    settings = api_settings(database_url, platform.minio, platform.bucket, kube, kube_namespace)
    store = S3Storage(settings)
    dispatcher = KubernetesDispatcher.from_settings(settings)
    vid, _ = platform.add_video(sources["1080p"])
    with Session(platform.engine) as s:
        svc.retry(s, dispatcher, s.get_one(Video, vid))  # generation 1 of the 1080p source
    name = f"video-{vid}"
    # Wait until renditions of the first source are being made (some may already be stored).
    platform.wait(
        name,
        lambda cr: (cr.get("status") or {}).get("phase") == "Transcoding",
        "the first transcode to run",
        timeout=90,
    )
    new_key = storage.source_key(vid, "replacement-tiny.mp4")
    platform.minio.client().upload_file(str(sources["tiny"]), platform.bucket, new_key)
    replaced_at = datetime.now().astimezone()
    with Session(platform.engine) as s:
        svc.set_source(s, store, dispatcher, s.get_one(Video, vid), new_key, 1)

    def done(cr: dict[str, Any]) -> bool:
        st = cr.get("status") or {}
        return st.get("phase") == "Succeeded" and cr["spec"]["source"]["key"] == new_key

    platform.wait(name, done, "the replacement's transcode", timeout=150)
    row = platform.video(vid)
    assert (row.transcode_generation, row.processing_state) == (2, "ready")
    assert row.source_key == new_key
    # Only the replacement's renditions (a 180p source gets the small rungs only) are stored; the
    # 1080p source's larger renditions and the first source itself are gone.
    listed = platform.minio.client().list_objects_v2(
        Bucket=platform.bucket, Prefix=storage.video_prefix(vid)
    )["Contents"]
    dirs = {o["Key"].split("/")[2] for o in listed}
    assert dirs - {"source", "thumbnails", "results"} == set(row.converted_files), dirs
    # The stored step results are the replacement generation's only.
    results = {o["Key"].split("/")[3].split("-")[0] for o in listed if "/results/" in o["Key"]}
    assert results == {"2"}, results
    assert [o["Key"] for o in listed if "/source/" in o["Key"]] == [new_key]
    stale = [o["Key"] for o in listed if o["LastModified"] < replaced_at and o["Key"] != new_key]
    assert not stale, stale
