"""Outages of the servers the operator depends on, mid-run: MinIO, PostgreSQL, kube-apiserver.

Each server here is this module's own (MinIO, PostgreSQL and a whole control plane, restartable
on the same port with the same data), so stopping one never disturbs the session's shared ones.
The operator is the real `kopf run`, Jobs run the real transcoder on tiny sources.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from sqlalchemy.orm import Session
from videoflix_core import storage
from videoflix_core.db.models import Video
from videoflix_core.transcode import videotranscode_manifest
from videoflix_operator.plan import step_key

from tests.cluster.controlplane import BinariesUnavailable, binaries_dir
from tests.cluster.fixtures import Kube, missing_binaries_outcome, start_kube, stop_kube
from tests.fixtures.minio import MinioProcess, MinioServer
from tests.fixtures.postgres import PostgresProcess, PostgresServer
from tests.operator.conftest import Platform, make_platform, sources  # noqa: F401  (fixtures)
from tests.operator.test_operator_cluster import assert_status_and_row_agree

pytestmark = [pytest.mark.faults, pytest.mark.cluster]
TINY = {"renditions": ["120p"], "thumbnail": False}
TERMINAL = ("Succeeded", "Failed")


# --- this module's own servers (they override the session fixtures of the same name) ---------


@pytest.fixture(scope="module")
def own_minio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MinioProcess]:
    minio = MinioProcess.create(tmp_path_factory.mktemp("outage-minio"))
    minio.start()
    try:
        yield minio
    finally:
        minio.stop()


@pytest.fixture(scope="module")
def minio_server(own_minio: MinioProcess) -> MinioServer:
    return own_minio.server


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[PostgresProcess]:
    pg = PostgresProcess.create()
    try:
        pg.start()
        yield pg
    finally:
        pg.remove()


@pytest.fixture(scope="module")
def postgres_server(own_postgres: PostgresProcess) -> PostgresServer:
    return own_postgres.server


@pytest.fixture(scope="module")
def kube() -> Iterator[Kube]:
    try:
        binaries_dir()
    except BinariesUnavailable as error:
        if missing_binaries_outcome(os.environ.get("CI")) == "fail":
            pytest.fail(f"{error} (CI=true: not skipping)", pytrace=False)
        pytest.skip(str(error))
    workdir = Path(tempfile.mkdtemp(prefix="videoflix-kube-outage-"))
    cluster = start_kube(workdir)
    try:
        yield cluster
    finally:
        stop_kube(cluster)
        shutil.rmtree(workdir, ignore_errors=True)


# --- helpers -------------------------------------------------------------------------------


def phase(p: Platform, name: str) -> str | None:
    return ((p.cr(name) or {}).get("status") or {}).get("phase")


def wait_for(check: Callable[[], bool], what: str, p: Platform, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out: {what}\n{p.operator.log()[-3000:]}"
        assert p.operator.proc is not None and p.operator.proc.poll() is None, p.operator.log()
        time.sleep(0.3)


def wait_terminal(p: Platform, names: list[str], timeout: float = 180) -> None:
    wait_for(lambda: all(phase(p, n) in TERMINAL for n in names), "every CR terminal", p, timeout)


def assert_no_duplicates(p: Platform, name: str) -> None:
    """One Job per step of the CR's current spec, and no step whose pod ran twice."""
    cr = p.cr(name)
    assert cr is not None
    jobs = p.jobs(name)
    assert Counter(step_key(j) for j in jobs) == Counter({"probe": 1, "rendition/120p": 1})
    for job in jobs:
        assert job["metadata"]["labels"]["videoflix.io/spec-hash"] == cr["status"]["specHash"]
        assert len(p.kube.job_pods(p.namespace, job["metadata"]["name"])) == 1, job["status"]


# --- the tests -----------------------------------------------------------------------------


def test_minio_stopped_mid_transcode_every_video_ends_terminal(
    make_platform: Any,  # noqa: F811
    sources: dict[str, Path],  # noqa: F811
    own_minio: MinioProcess,
) -> None:
    p: Platform = make_platform(max_running_jobs="4")
    videos = [p.transcode(sources["tiny"], **TINY) for _ in range(5)]
    names = [n for _, n in videos]
    wait_for(lambda: any(p.jobs(n) for n in names), "the first Jobs", p)
    own_minio.kill()
    # Down until the outage has visibly hurt: a step pod failed (a transcoder that cannot reach
    # S3 exits non-zero), or the deadline says the Jobs had nothing left to do.
    wait_for(
        lambda: any(
            (j.get("status") or {}).get("failed") for n in names for j in p.jobs(n)
        ),
        "a step to fail while MinIO is down",
        p,
        timeout=90,
    )
    own_minio.start()
    wait_terminal(p, names)
    outcomes = Counter(phase(p, n) for n in names)
    for vid, name in videos:
        cr = p.cr(name)
        assert cr is not None
        assert_status_and_row_agree(p, cr, vid)
        if phase(p, name) == "Failed":
            assert p.video(vid).processing_error, "an error without a reason"
        else:
            assert any("/120p/" in k for k in p.keys(vid))
    # Retries (backoffLimit 2) outlast a short outage: most videos still end ready.
    assert outcomes["Succeeded"] >= 1, outcomes


def test_postgres_restarted_during_operator_writes_rows_converge(
    make_platform: Any,  # noqa: F811
    sources: dict[str, Path],  # noqa: F811
    own_postgres: PostgresProcess,
) -> None:
    p: Platform = make_platform(max_running_jobs="4")
    # The operator is down while the rows and CRs are made and PostgreSQL stops, so every video
    # still owes all its writes: tiny transcodes cannot all finish before the stop takes effect.
    p.operator.stop()
    videos = [p.transcode(sources["tiny"], **TINY) for _ in range(5)]
    names = [n for _, n in videos]
    p.engine.dispose()  # the test's own pooled connections die with the server
    own_postgres.stop()
    p.operator.start()
    wait_for(
        lambda: "Could not write the outcome" in p.operator.log(),
        "a write to fail while PostgreSQL is down",
        p,
        timeout=90,
    )
    own_postgres.start()
    wait_terminal(p, names)

    def converged() -> bool:
        return all(p.video(v).processing_state == "ready" for v, _ in videos)

    wait_for(converged, "every row to say ready", p, timeout=60)
    for vid, name in videos:
        cr = p.cr(name)
        assert cr is not None and phase(p, name) == "Succeeded"
        assert_status_and_row_agree(p, cr, vid)
        assert_no_duplicates(p, name)


def test_apiserver_killed_mid_run_the_operator_resumes_without_a_restart(
    make_platform: Any,  # noqa: F811
    sources: dict[str, Path],  # noqa: F811
    kube: Kube,
) -> None:
    p: Platform = make_platform(max_running_jobs="4")
    videos = [p.transcode(sources["tiny"], **TINY) for _ in range(5)]
    names = [n for _, n in videos]
    wait_for(lambda: any(phase(p, n) == "Transcoding" for n in names), "a transcode to run", p)
    assert p.operator.proc is not None
    pid = p.operator.proc.pid
    p.operator.forbidden_ok = True  # the restarted API server refuses until RBAC is synced
    log_before = len(p.operator.log())
    kube.control_plane.kill_apiserver()
    # Down until the operator has noticed (its watches or calls failed), not a fixed time.
    deadline = time.monotonic() + 60
    while len(p.operator.log()) == log_before or not any(
        w in p.operator.log()[log_before:] for w in ("refused", "Connection", "Error", "retrying")
    ):
        assert time.monotonic() < deadline, p.operator.log()[-3000:]
        assert p.operator.proc.poll() is None, p.operator.log()[-3000:]
        time.sleep(0.2)
    kube.control_plane.start_apiserver()
    wait_terminal(p, names)
    assert p.operator.proc.poll() is None and p.operator.proc.pid == pid  # the same process
    for vid, name in videos:
        cr = p.cr(name)
        assert cr is not None and phase(p, name) == "Succeeded", (cr or {}).get("status")
        assert_status_and_row_agree(p, cr, vid)
        assert_no_duplicates(p, name)


def restricted_credentials(minio: MinioServer, bucket: str) -> dict[str, str]:
    """Temporary credentials (MinIO's STS AssumeRole) that may use `bucket` and nothing else."""
    sts = boto3.client(
        "sts",
        endpoint_url=minio.endpoint_url,
        aws_access_key_id=minio.access_key,
        aws_secret_access_key=minio.secret_key,
        region_name=minio.region,
    )
    only = [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]
    allow = {"Effect": "Allow", "Action": ["s3:*"], "Resource": only}
    policy = {"Version": "2012-10-17", "Statement": [allow]}
    got = sts.assume_role(
        RoleArn="arn:xxx:xxx:xxx:xxxx",  # MinIO ignores the role; the policy is what counts
        RoleSessionName="videoflix-fault-test",
        Policy=json.dumps(policy),
        DurationSeconds=3600,
    )["Credentials"]
    return {
        "AWS_ACCESS_KEY_ID": got["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": got["SecretAccessKey"],
        "AWS_SESSION_TOKEN": got["SessionToken"],
    }


def test_permanent_403_ends_error_within_the_retry_budget_others_unaffected(
    make_platform: Any,  # noqa: F811
    sources: dict[str, Path],  # noqa: F811
) -> None:
    """The Job pods sign with credentials MinIO refuses for one video's bucket (ambient-style
    AWS_* credentials, as IRSA gives them): that video ends `error` with a reason after its
    retries; the videos in the allowed bucket end ready."""
    p: Platform = make_platform(max_running_jobs="4", backoff_limit="1")
    minio = p.minio
    denied = f"{p.bucket}-denied"
    minio.client().create_bucket(Bucket=denied)
    try:
        secret = {
            "VIDEOFLIX_S3_ENDPOINT_URL": minio.endpoint_url,
            "VIDEOFLIX_S3_REGION": minio.region,
            **restricted_credentials(minio, p.bucket),
        }
        p.kube.client.delete(f"/api/v1/namespaces/{p.namespace}/secrets/videoflix-s3")
        p.kube.client.create(
            f"/api/v1/namespaces/{p.namespace}/secrets",
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "videoflix-s3"},
             "stringData": secret},
        )
        good = [p.transcode(sources["tiny"], **TINY) for _ in range(2)]
        with Session(p.engine) as s:
            video = Video(title="denied", transcode_generation=0)
            s.add(video)
            s.commit()
            bad_vid = video.id
        key = storage.source_key(bad_vid, "src-tiny.mp4")
        minio.client().upload_file(str(sources["tiny"]), denied, key)
        with Session(p.engine) as s:
            s.get_one(Video, bad_vid).source_key = key
            s.commit()
        # This one CR points at the bucket its Jobs may not read.
        manifest = videotranscode_manifest(bad_vid, denied, key, 0, p.namespace, **TINY)
        p.kube.client.create(p.path("vt"), manifest)
        bad_name = str(manifest["metadata"]["name"])
        names = [bad_name, *(n for _, n in good)]
        wait_terminal(p, names, timeout=150)
        assert phase(p, bad_name) == "Failed"
        row = p.video(bad_vid)
        assert row.processing_state == "error" and row.processing_error, row.processing_error
        # The retry budget, not a storm: backoffLimit 1 is two pods of the probe, no more.
        probe = [j for j in p.jobs(bad_name) if step_key(j) == "probe"]
        assert len(probe) == 1
        assert len(p.kube.job_pods(p.namespace, probe[0]["metadata"]["name"])) == 2
        for vid, name in good:
            cr = p.cr(name)
            assert cr is not None and phase(p, name) == "Succeeded", (cr or {}).get("status")
            assert_status_and_row_agree(p, cr, vid)
    finally:
        keys = minio.keys(denied)
        if keys:
            minio.client().delete_objects(
                Bucket=denied, Delete={"Objects": [{"Key": k} for k in keys]}
            )
        minio.client().delete_bucket(Bucket=denied)
