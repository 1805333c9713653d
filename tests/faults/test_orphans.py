"""CRs without a videos row, and CRs deleted under a live row, on the real control plane with the
real operator, transcoder, MinIO and PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import delete
from sqlalchemy.orm import Session
from videoflix_core.db import Video
from videoflix_operator.reconcile import RESOURCE_DELETED

from tests.operator.conftest import Platform, make_platform, sources  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.faults, pytest.mark.cluster]


def wait_gone(platform: Platform, name: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while platform.cr(name) is not None:
        if time.monotonic() > deadline:
            raise AssertionError(f"{name} is still there\n{platform.operator.log()[-3000:]}")
        time.sleep(0.3)


def test_orphan_cr_is_collected_and_its_storage_wiped_with_ambient_credentials(
    make_platform: Callable[..., Platform],  # noqa: F811
    sources: dict[str, Path],  # noqa: F811
) -> None:
    """No S3 keys in the operator's settings: only the SDK's standard AWS_* env (the default
    chain, as IRSA gives it) and the endpoint. A CR whose row was deleted (its cancel failed) is
    deleted by the operator on resume, and its finalizer really deletes the objects."""
    platform = make_platform(
        s3_access_key_id="", s3_secret_access_key="", s3_ambient_credentials="true"
    )
    platform.operator.stop()
    creds = platform.minio
    env = dict(platform.operator.env)
    assert not env["VIDEOFLIX_S3_ACCESS_KEY_ID"] and not env["VIDEOFLIX_S3_SECRET_ACCESS_KEY"]
    env.update({"AWS_ACCESS_KEY_ID": creds.access_key, "AWS_SECRET_ACCESS_KEY": creds.secret_key})
    platform.operator.env = env
    platform.operator.start()

    vid, name = platform.transcode(sources["tiny"])
    platform.wait_phase(name, "Succeeded", timeout=120)
    assert len(platform.keys(vid)) > 2  # source, renditions, thumbnails
    # The API deleted the row, then could not cancel the CR (say the API server was down), and
    # the operator restarted meanwhile: nobody but the operator will ever delete this CR.
    platform.operator.stop()
    with Session(platform.engine) as s:
        s.execute(delete(Video).where(Video.id == vid))
        s.commit()
    platform.operator.start()

    wait_gone(platform, name)
    assert platform.keys(vid) == []
    assert "Deleting orphan" in platform.operator.log()


def test_deleting_the_cr_under_a_live_row_keeps_the_media_and_tells_staff(
    make_platform: Callable[..., Platform],  # noqa: F811
    sources: dict[str, Path],  # noqa: F811
) -> None:
    """`kubectl delete vt` is not a video delete: the row owns the media. A ready video keeps
    playing; one still transcoding stops (Jobs gone) and says why, so staff can retry."""
    platform = make_platform()
    ready_id, ready = platform.transcode(sources["tiny"])
    platform.wait_phase(ready, "Succeeded", timeout=120)
    running_id, running = platform.transcode(sources["1080p"])
    platform.wait(
        running,
        lambda cr: (cr.get("status") or {}).get("phase") in ("Probing", "Transcoding"),
        "the second transcode to start",
        timeout=90,
    )
    ready_keys = platform.keys(ready_id)

    platform.kube.client.delete(platform.path("vt", ready))
    platform.kube.client.delete(platform.path("vt", running))
    wait_gone(platform, ready)
    wait_gone(platform, running)

    row = platform.video(ready_id)
    assert row.processing_state == "ready" and row.converted_files
    assert platform.keys(ready_id) == ready_keys  # nothing of the ready video was deleted
    row = platform.video(running_id)
    assert (row.processing_state, row.processing_error) == ("error", RESOURCE_DELETED)
    assert row.source_key in platform.keys(running_id)  # a retry can start again from it
    assert platform.jobs(running) == []
