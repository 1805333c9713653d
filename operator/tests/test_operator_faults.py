"""The operator's fault decisions (pure) and the reconciler's bounded caches (real control plane
and PostgreSQL, the reconciler run in-process so its caches can be inspected)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session
from videoflix_core.db.migrate import upgrade
from videoflix_core.db.models import Video
from videoflix_core.states import ProcessingState
from videoflix_core.status import spec_hash
from videoflix_core.transcode import (
    Phase,
    StepPhase,
    StepStatus,
    VideoTranscodeSpec,
    VideoTranscodeStatus,
    videotranscode_manifest,
)
from videoflix_operator.config import OperatorSettings
from videoflix_operator.database import Database, RowView
from videoflix_operator.k8s import Kube
from videoflix_operator.objectstore import store_wanted
from videoflix_operator.reconcile import Reconciler, Teardown, needs_results, teardown


def test_teardown_wipes_only_videos_without_a_row() -> None:
    assert teardown(True, None, 3) == Teardown(wipe_storage=True, fail_row=False)
    assert teardown(False, None, 3) == Teardown(wipe_storage=True, fail_row=False)
    ready = RowView(3, ProcessingState.READY)
    assert teardown(True, ready, 3) == Teardown(wipe_storage=False, fail_row=False)
    running = RowView(3, ProcessingState.PROCESSING)
    assert teardown(True, running, 3) == Teardown(wipe_storage=False, fail_row=True)
    # A newer generation's transcode is not this CR's to stop or to report on.
    assert teardown(True, RowView(4, ProcessingState.PENDING), 3).fail_row is False


def test_store_is_built_for_keys_endpoint_ambient_or_a_resolving_chain() -> None:
    def never() -> bool:
        raise AssertionError("the chain must not be asked when settings decide")

    assert store_wanted(OperatorSettings(s3_endpoint_url="http://minio:9000"), never)
    assert store_wanted(OperatorSettings(s3_access_key_id="AK"), never)
    assert store_wanted(OperatorSettings(s3_ambient_credentials=True), never)
    assert store_wanted(OperatorSettings(), lambda: True)  # e.g. IRSA's web identity env
    assert not store_wanted(OperatorSettings(), lambda: False)


def _spec(video_id: int) -> VideoTranscodeSpec:
    manifest = videotranscode_manifest(
        video_id, "media", f"videos/{video_id}/source/a.mp4", 0, "ns"
    )
    return VideoTranscodeSpec.model_validate(manifest["spec"])


def _failed_status(spec: VideoTranscodeSpec) -> VideoTranscodeStatus:
    return VideoTranscodeStatus(
        phase=Phase.FAILED,
        spec_hash=spec_hash(spec),
        transcode_generation=0,
        message="probe failed: not a video",
        probe=StepStatus(phase=StepPhase.FAILED, attempts=1, message="not a video"),
    )


def test_finished_cr_of_this_spec_needs_no_job_results() -> None:
    spec = _spec(1)
    done: dict[str, Any] = {"status": {"conditions": [{"type": "Complete", "status": "True"}]}}
    running: dict[str, Any] = {"status": {"active": 1}}
    assert not needs_results(_failed_status(spec), spec, [done])
    assert needs_results(_failed_status(spec), spec, [done, running])  # a step still runs
    assert needs_results(_failed_status(_spec(2)), spec, [done])  # another spec's status
    assert needs_results(None, spec, [done])


@pytest.mark.cluster
def test_caches_stay_bounded_after_many_finished_crs(
    kube: Any, kube_namespace: str, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    upgrade(database_url)
    engine = create_engine(database_url)
    with Session(engine) as s:
        videos = [Video(title=f"v{i}", transcode_generation=0) for i in range(50)]
        s.add_all(videos)
        s.commit()
        ids = [v.id for v in videos]
    base = f"/apis/videoflix.io/v1alpha1/namespaces/{kube_namespace}/videotranscodes"
    names = []
    for vid in ids:
        manifest = videotranscode_manifest(
            vid, "media", f"videos/{vid}/source/a.mp4", 0, kube_namespace
        )
        name = manifest["metadata"]["name"]
        kube.client.create(base, manifest)
        spec = VideoTranscodeSpec.model_validate(manifest["spec"])
        kube.client.patch(f"{base}/{name}/status", {"status": _failed_status(spec).wire()})
        names.append(name)

    monkeypatch.setenv("KUBECONFIG", kube.kubeconfig)
    settings = OperatorSettings(namespace=kube_namespace, cache_size=10, database_url=database_url)
    database = Database(database_url)
    rec = Reconciler(
        settings=settings,
        kube=Kube.from_environment(),
        store=None,
        database=database,
        post_event=lambda body, note: None,
    )

    async def reconcile_all() -> None:
        for name in names:
            await rec.reconcile(kube_namespace, name)

    try:
        asyncio.run(reconcile_all())
    finally:
        rec.kube.close()
        database.close()
    # Every outcome reached its row, but only the most recent `cache_size` are remembered.
    with Session(engine) as s:
        states = s.scalars(select(Video.processing_state).where(Video.id.in_(ids))).all()
    assert set(states) == {"error"} and len(states) == 50
    assert len(rec._written) == 10
    assert [rec.is_synced(kube_namespace, n) for n in names[-10:]] == [True] * 10
    assert not rec.is_synced(kube_namespace, names[0])
    assert rec._locks == {} and rec._live == {} and rec._results == {}
    jobs = kube.client.get(f"/apis/batch/v1/namespaces/{kube_namespace}/jobs")["items"]
    assert jobs == []  # finished CRs start nothing
    engine.dispose()
