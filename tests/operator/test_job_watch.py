"""The operator's own Jobs watch (`Kube.list_jobs` / `Kube.watch_jobs`, not kopf's) against the
real API server: every change of a managed Job reaches the cache's feed in order, slimmed, and
a watch resumes from the version it returned.

Not provoked here: a 410 (the API server's watch cache kept every version of this test cluster,
even after an etcd compaction); `Reconciler.run_job_watch` answers it by listing again."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from videoflix_core.status import spec_hash
from videoflix_core.transcode import VideoTranscodeSpec
from videoflix_operator.builders import Owner, build_job
from videoflix_operator.config import OperatorSettings
from videoflix_operator.k8s import Kube

from tests.cluster import fixtures

pytestmark = pytest.mark.cluster


def manifest(namespace: str, cr: str) -> dict[str, Any]:
    spec = VideoTranscodeSpec.model_validate(
        {"videoId": 7, "source": {"bucket": "media", "key": "videos/7/s/a.mp4"}}
    )
    job = build_job(
        owner=Owner(name=cr, namespace=namespace, uid="u-7"),
        spec=spec,
        spec_hash=spec_hash(spec),
        step="probe",
        rungs=[],
        settings=OperatorSettings(namespace=namespace),
    )
    # No CR of that uid exists: the garbage collector would delete the Job at once.
    del job["metadata"]["ownerReferences"]
    return job


def test_the_watch_feeds_every_change_and_resumes(
    kube: fixtures.Kube, kube_namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", kube.kubeconfig)

    async def scenario() -> None:
        ours = Kube.from_environment()
        try:
            job = manifest(kube_namespace, "video-7")  # created suspended: no pod ever runs
            name = job["metadata"]["name"]
            assert await ours.create_job(kube_namespace, job)
            listed, version = await ours.list_jobs(kube_namespace)
            assert listed == 1 and version

            seen: list[tuple[str, dict[str, Any]]] = []
            arrived = asyncio.Event()

            def on_event(kind: str, slim: dict[str, Any]) -> None:
                seen.append((kind, slim))
                arrived.set()

            def matching(kind: str, job: dict[str, Any]) -> bool:
                # Other writers (the Job controller's status) may come first: wait for ours.
                annotations = job["metadata"]["annotations"]
                return kind == "MODIFIED" and annotations.get("videoflix.io/priority") == "5"

            async def until(wanted: Any) -> dict[str, Any]:
                async with asyncio.timeout(30):
                    while not any(wanted(k, j) for k, j in seen):
                        arrived.clear()
                        await arrived.wait()
                return next(j for k, j in seen if wanted(k, j))

            # Ten seconds: long enough for the writes below on a loaded machine.
            watch = asyncio.create_task(ours.watch_jobs(kube_namespace, version, on_event, 10))
            await ours.annotate_job(kube_namespace, name, {"videoflix.io/priority": "5"})
            modified = await until(matching)
            assert "template" not in modified["spec"]  # slimmed before it reaches the loop
            async with asyncio.timeout(60):
                resumed_from = await watch  # the server ended it after 10 s
            assert int(resumed_from) >= int(modified["metadata"]["resourceVersion"])

            # Resumed from there, the delete arrives and nothing before it again.
            seen.clear()
            watch = asyncio.create_task(
                ours.watch_jobs(kube_namespace, resumed_from, on_event, 10)
            )
            await ours.delete_job(kube_namespace, name)
            deleted = await until(lambda kind, _: kind == "DELETED")
            assert deleted["metadata"]["name"] == name
            assert all(
                int(j["metadata"]["resourceVersion"]) > int(resumed_from) for _, j in seen
            )
            async with asyncio.timeout(60):
                await watch

        finally:
            ours.close()

    asyncio.run(scenario())
