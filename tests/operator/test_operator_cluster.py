"""The operator end to end: a real kopf process, control plane, transcoder, MinIO and PostgreSQL."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.orm import Session
from videoflix_core.db.models import Video
from videoflix_core.transcode import LABEL_RENDITION, LABEL_STEP

from tests.cluster.fixtures import Kube
from tests.fixtures.procs import wait_until
from tests.operator.conftest import Platform

pytestmark = pytest.mark.cluster
LADDER = ["120p", "360p", "720p", "1080p"]


def status(cr: dict[str, Any]) -> dict[str, Any]:
    return dict(cr.get("status") or {})


def condition(cr: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in status(cr)["conditions"] if c["type"] == kind)


def assert_status_and_row_agree(p: Platform, cr: dict[str, Any], video_id: int) -> None:
    """Read at one instant on purpose: the operator writes the row before the CR status, so a
    terminal CR implies a row that already says so (a lagging row is a bug, not a race)."""
    st = status(cr)
    row = p.video(video_id)
    assert row.processing_state == {"Succeeded": "ready", "Failed": "error"}[st["phase"]]
    outputs = {n: r["output"] for n, r in st.get("renditions", {}).items() if r.get("output")}
    assert set(row.converted_files) == set(outputs)
    for name, out in outputs.items():
        assert row.converted_files[name]["file"] == out["file"]
        assert row.converted_files[name]["bytes"] == out["bytes"]
        assert row.converted_files[name]["height"] == out["height"]
    if st["phase"] == "Succeeded":
        assert row.progress == 100
        poster = st["thumbnail"]["output"]["poster"] if "thumbnail" in st else None
        assert row.thumbnail_key == poster
        assert row.duration_seconds == pytest.approx(st["source"]["durationSeconds"])


def test_1080p_source_ends_succeeded_with_four_renditions_and_thumbnail(
    make_platform: Any, sources: dict[str, Path]
) -> None:
    p: Platform = make_platform()
    vid, name = p.transcode(sources["1080p"])
    cr = p.wait_phase(name, "Succeeded", timeout=240)
    st = status(cr)
    assert st["progress"] == 100
    assert st["ready"] == "4/4"
    assert sorted(st["renditions"], key=LADDER.index) == LADDER
    for rung, r in st["renditions"].items():
        assert r["phase"] == "Succeeded"
        assert r["output"]["height"] == int(rung[:-1])
        assert r["output"]["file"] == f"videos/{vid}/{rung}/video.mp4"
    assert condition(cr, "Ready")["status"] == "True"
    assert condition(cr, "Playable")["status"] == "True"
    assert condition(cr, "Failed")["status"] == "False"
    assert st["observedGeneration"] == cr["metadata"]["generation"]
    keys = set(p.keys(vid))
    for rung in LADDER:
        assert {f"videos/{vid}/{rung}/video.mp4", f"videos/{vid}/{rung}/index.m3u8"} <= keys
    assert f"videos/{vid}/thumbnails/poster.jpg" in keys
    assert_status_and_row_agree(p, cr, vid)
    jobs = p.jobs(name)
    assert len(jobs) == 6  # probe + 4 renditions + thumbnail
    for job in jobs:
        assert job["metadata"]["ownerReferences"][0]["uid"] == cr["metadata"]["uid"]
        assert len(job["metadata"]["name"]) <= 63
    # Created released while the cap (4) had room, queued past it: the probe alone, then 4 of
    # the 5 Jobs it planned started at once and one waited for the scheduler.
    was_queued = {
        (job["metadata"]["labels"][LABEL_STEP], job["metadata"]["labels"][LABEL_RENDITION])
        for job in jobs
        if any(c["type"] == "Suspended" for c in job.get("status", {}).get("conditions") or [])
    }
    assert len(was_queued) == 1 and next(iter(was_queued))[0] != "probe", was_queued
    assert "videoflix.io/cleanup" in cr["metadata"]["finalizers"]
    # kopf posts Events in the background: wait for them rather than read them once.
    expected = {"Probing", "Probed", "TranscodeSucceeded"}
    wait_until(
        lambda: expected <= {e["reason"] for e in p.events(name)}, f"the Events {expected}"
    )
    # The happy path posts phase changes only: no Event per Job, rendition or handler run.
    assert {e["reason"] for e in p.events(name)} == expected


def test_480p_source_gets_no_720p_or_1080p(make_platform: Any, sources: dict[str, Path]) -> None:
    p: Platform = make_platform()
    vid, name = p.transcode(sources["480p"])
    cr = p.wait_phase(name, "Succeeded")
    assert set(status(cr)["renditions"]) == {"120p", "360p"}
    assert status(cr)["ready"] == "2/2"
    assert not any("/720p/" in k or "/1080p/" in k for k in p.keys(vid))
    assert {j["metadata"]["labels"]["videoflix.io/rendition"] for j in p.jobs(name)} == {
        "",
        "120p",
        "360p",
    }
    assert_status_and_row_agree(p, cr, vid)
    # Observability of the same run: liveness and Prometheus metrics on their own ports.
    alive = httpx.get(f"http://127.0.0.1:{p.operator.liveness_port}/healthz", timeout=5)
    assert alive.status_code == 200 and alive.json()["scheduler"] is True
    port = p.operator.env["VIDEOFLIX_METRICS_PORT"]
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    assert 'videoflix_jobs_created_total{rendition="360p",step="rendition"} 1.0' in text
    assert 'videoflix_jobs_succeeded_total{rendition="120p"} 1.0' in text
    assert 'videoflix_transcodes{phase="Succeeded"} 1.0' in text
    assert "videoflix_queue_depth 0.0" in text
    assert "videoflix_reconcile_duration_seconds_count" in text


def test_broken_source_fails_with_the_probe_reason_and_no_retry_storm(
    make_platform: Any, sources: dict[str, Path], kube: Kube, kube_namespace: str
) -> None:
    # Job-pod scheduling settings ride along: the real API server validates the pod template and
    # resolves the PriorityClass (its admission refuses pods naming a class that does not exist).
    priority_class = f"videoflix-batch-{kube_namespace}"
    kube.client.create(
        "/apis/scheduling.k8s.io/v1/priorityclasses",
        {
            "apiVersion": "scheduling.k8s.io/v1",
            "kind": "PriorityClass",
            "metadata": {"name": priority_class},
            "value": 1234,
        },
    )
    toleration = {
        "key": "dedicated",
        "operator": "Equal",
        "value": "transcode",
        "effect": "NoSchedule",
    }
    affinity = {
        "nodeAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 1,
                    "preference": {
                        "matchExpressions": [
                            {"key": "videoflix.io/pool", "operator": "In", "values": ["transcode"]}
                        ]
                    },
                }
            ]
        }
    }
    try:
        p: Platform = make_platform(
            job_image_pull_secrets='[{"name": "regcred"}]',
            job_node_selector='{"kubernetes.io/os": "linux"}',
            job_tolerations=json.dumps([toleration]),
            job_affinity=json.dumps(affinity),
            job_priority_class_name=priority_class,
        )
        vid, name = p.transcode(sources["broken"])
        cr = p.wait_phase(name, "Failed")
        [job] = p.jobs(name)
        template = job["spec"]["template"]["spec"]
        assert template["imagePullSecrets"] == [{"name": "regcred"}]
        assert template["nodeSelector"] == {"kubernetes.io/os": "linux"}
        assert template["tolerations"] == [toleration]
        assert template["affinity"] == affinity
        assert template["priorityClassName"] == priority_class
        [pod] = p.pods(name)
        assert pod["spec"]["priority"] == 1234  # resolved by the API server's admission
        assert toleration in pod["spec"]["tolerations"]
    finally:
        kube.client.delete(f"/apis/scheduling.k8s.io/v1/priorityclasses/{priority_class}")
    st = status(cr)
    assert st["message"].startswith("probe: ")
    assert len(st["message"]) > len("probe: ") + 5
    assert condition(cr, "Failed")["reason"] == "ProbeFailed"
    time.sleep(3)  # give a retry storm the chance to show itself
    jobs = p.jobs(name)
    assert [j["metadata"]["labels"]["videoflix.io/step"] for j in jobs] == ["probe"]
    assert len(p.pods(name)) == 1  # exit 2 fails the Job at once: no retries
    row = p.video(vid)
    assert row.processing_state == "error"
    assert row.processing_error == st["message"]
    wait_until(
        lambda: "TranscodeFailed" in {e["reason"] for e in p.events(name)},
        "a TranscodeFailed Event",
    )


def test_transient_failure_is_retried(
    make_platform: Any, sources: dict[str, Path], flaky_image: str
) -> None:
    p: Platform = make_platform(transcoder_image=flaky_image)
    vid, name = p.transcode(sources["480p"])
    cr = p.wait_phase(name, "Succeeded")
    renditions = status(cr)["renditions"]
    assert renditions["360p"]["attempts"] == 2
    assert renditions["120p"]["attempts"] == 1
    assert_status_and_row_agree(p, cr, vid)
    # Kubernetes posts Events asynchronously: wait for the retry's one line.
    wait_until(
        lambda: any(
            e["reason"] == "StepRetried" and e["message"].startswith("Step 360p")
            for e in p.events(name)
        ),
        "a StepRetried Event for 360p",
    )


def test_operator_killed_mid_way_resumes_without_duplicates(
    make_platform: Any, sources: dict[str, Path]
) -> None:
    p: Platform = make_platform(max_running_jobs="1")
    vid, name = p.transcode(sources["1080p"])
    p.wait(name, lambda cr: status(cr).get("phase") == "Transcoding", "transcoding")
    p.operator.kill()
    time.sleep(2)  # Jobs keep running (and finishing) while no operator watches
    p.operator.start()
    cr = p.wait_phase(name, "Succeeded", timeout=300)
    jobs = p.jobs(name)
    assert len(jobs) == 6
    for job in jobs:
        assert job["status"].get("succeeded") == 1
        assert not job["status"].get("failed")
    assert len(p.pods(name)) == 6  # each step ran exactly once
    assert_status_and_row_agree(p, cr, vid)


def test_deleting_the_cr_removes_jobs_and_every_stored_object(
    make_platform: Any, sources: dict[str, Path]
) -> None:
    """A video delete: the API removes the row, then the CR (a CR deleted under a live row keeps
    the media: tests/faults/test_orphans.py)."""
    p: Platform = make_platform()
    vid, name = p.transcode(sources["480p"])
    p.wait_phase(name, "Succeeded")
    assert len(p.keys(vid)) > 5
    with Session(p.engine) as s:
        s.delete(s.get_one(Video, vid))
        s.commit()
    p.kube.client.delete(p.path("vt", name))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (p.cr(name) or p.jobs(name) or p.keys(vid)):
        time.sleep(0.5)
    assert p.cr(name) is None
    assert p.jobs(name) == []
    assert p.keys(vid) == []


def test_spec_change_supersedes_old_jobs_and_outputs(
    make_platform: Any, sources: dict[str, Path]
) -> None:
    p: Platform = make_platform()
    vid, name = p.transcode(sources["1080p"], renditions=["120p", "720p"], thumbnail=False)
    p.wait_phase(name, "Succeeded")
    old_jobs = {j["metadata"]["name"] for j in p.jobs(name)}
    old_key = next(k for k in p.keys(vid) if "/source/" in k)
    # Replace the source with a 480p one: a new generation.
    new_key = f"videos/{vid}/source/replacement.mp4"
    p.minio.client().upload_file(str(sources["480p"]), p.bucket, new_key)
    with p.engine.begin() as conn:
        conn.exec_driver_sql(f"UPDATE videos SET transcode_generation = 1 WHERE id = {vid}")
    p.kube.client.patch(
        p.path("vt", name),
        {"spec": {"transcodeGeneration": 1, "source": {"bucket": p.bucket, "key": new_key}}},
    )
    cr = p.wait(
        name,
        lambda cr: (
            status(cr).get("transcodeGeneration") == 1 and status(cr).get("phase") == "Succeeded"
        ),
        "the new generation to succeed",
    )
    assert set(status(cr)["renditions"]) == {"120p"}
    keys = set(p.keys(vid))
    assert old_key not in keys and new_key in keys
    assert not any("/720p/" in k for k in keys)
    assert not old_jobs & {j["metadata"]["name"] for j in p.jobs(name)}
    assert p.video(vid).transcode_generation == 1
    assert_status_and_row_agree(p, cr, vid)


def test_concurrency_cap_holds_under_20_crs(make_platform: Any, sources: dict[str, Path]) -> None:
    cap = 3
    p: Platform = make_platform(max_running_jobs=str(cap), scheduler_interval_seconds="1")
    names = [p.transcode(sources["tiny"], thumbnail=False, priority=i % 3)[1] for i in range(20)]
    peak, queued_seen = 0, 0
    stop = threading.Event()
    errors: list[str] = []

    def watch() -> None:
        nonlocal peak, queued_seen
        while not stop.is_set():
            jobs = p.jobs()
            unfinished = [
                j
                for j in jobs
                if not any(
                    c.get("status") == "True" and c["type"] in ("Complete", "Failed")
                    for c in j.get("status", {}).get("conditions") or []
                )
            ]
            running = [j for j in unfinished if not j["spec"].get("suspend")]
            peak = max(peak, len(running))
            queued_seen = max(queued_seen, len(unfinished) - len(running))
            if len(running) > cap:
                errors.append(f"{len(running)} running Jobs > cap {cap}")
            time.sleep(0.1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        for name in names:
            p.wait_phase(name, "Succeeded", timeout=400)
    finally:
        stop.set()
        watcher.join(5)
    assert errors == []
    assert peak == cap  # the cap was reached, so it was tested
    assert queued_seen > 0  # work really queued behind it


def test_database_outage_is_retried_not_dropped(
    make_platform: Any, sources: dict[str, Path]
) -> None:
    p: Platform = make_platform()
    with Session(p.engine) as s:
        s.add(Video(id=1, title="back", transcode_generation=0))
        s.commit()
    # The videos table goes away (every write fails) and later comes back in one atomic
    # statement, so no write can land between a table's return and its row's.
    with p.engine.begin() as c:
        c.exec_driver_sql("ALTER TABLE videos RENAME TO videos_away")
    key = "videos/1/source/src-tiny.mp4"
    p.minio.client().upload_file(str(sources["tiny"]), p.bucket, key)
    name = p.create(1, key, thumbnail=False)
    cr = p.wait_phase(name, "Succeeded")  # the cluster side does not wait for the database
    deadline = time.monotonic() + 30
    while "Could not write the outcome" not in p.operator.log():
        assert time.monotonic() < deadline, p.operator.log()[-3000:]
        time.sleep(0.5)
    # The database comes back: the pending outcome lands without any new event.
    with p.engine.begin() as c:
        c.exec_driver_sql("ALTER TABLE videos_away RENAME TO videos")
    deadline = time.monotonic() + 60
    while p.video(1).processing_state != "ready":
        assert time.monotonic() < deadline, p.operator.log()[-3000:]
        time.sleep(0.5)
    assert_status_and_row_agree(p, cr, 1)


def test_cluster_wide_operator_runs_a_transcode_in_any_namespace(
    make_platform: Any, sources: dict[str, Path]
) -> None:
    # `kopf run --all-namespaces` under a ClusterRole of the same rules (the chart's
    # `operator.watchScope: cluster`). Its own VIDEOFLIX_NAMESPACE is another namespace, so only
    # the cluster-wide watches can find this CR and its Jobs.
    p: Platform = make_platform(all_namespaces=True, namespace="videoflix-elsewhere")
    assert p.operator.proc is not None and "--all-namespaces" in p.operator.proc.args
    vid, name = p.transcode(sources["tiny"], renditions=["120p"], thumbnail=False)
    cr = p.wait_phase(name, "Succeeded")
    st = status(cr)
    assert st["ready"] == "1/1"
    assert st["renditions"]["120p"]["output"]["file"] == f"videos/{vid}/120p/video.mp4"
    assert {j["metadata"]["namespace"] for j in p.jobs(name)} == {p.namespace}
    assert p.video(vid).processing_state == "ready"
