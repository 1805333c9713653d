"""Results that survive (issue 11): the operator is stopped while its Jobs finish, longer than the
Jobs' TTL, on the real control plane (Job, TTL and garbage collector controllers), the real
operator, transcoder, MinIO and PostgreSQL.

Fault: SIGKILL of the operator while every rendition and thumbnail Job runs; the Jobs then finish
and their TTL (2 s) deletes them with their pods, and one video's pods are deleted under its
finished Jobs (pod garbage collection). Invariant after the restart: 100 % of the results are
recorded from the stored result objects, every video `ready`, row == CR, no step re-run.
"""

from __future__ import annotations

import base64
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from videoflix_core import storage

from tests.cluster.fixtures import Kube
from tests.cluster.podenv import ImageMapping
from tests.fixtures.procs import wait_until
from tests.operator.conftest import Platform, make_platform, sources  # noqa: F401  (fixtures)
from tests.operator.test_operator_cluster import assert_status_and_row_agree

pytestmark = [pytest.mark.faults, pytest.mark.cluster]

HERE = Path(__file__).resolve().parent
GATED_IMAGE = "videoflix-gated:test"
VIDEOS = 3
GATED_STEPS = 2  # 120p and the thumbnail of the 320x180 source (the probe is not gated)


@pytest.fixture(scope="session")
def gated_image(kube: Kube) -> str:
    if not any(m.match == "videoflix-gated" for m in kube.kubelet.images):
        kube.kubelet.add_image(
            ImageMapping(
                match="videoflix-gated",
                entrypoint=(sys.executable, str(HERE / "gated_transcoder.py")),
            )
        )
    return GATED_IMAGE


def gate_dir(p: Platform) -> Path:
    secret = p.kube.client.get(f"/api/v1/namespaces/{p.namespace}/secrets/videoflix-s3")
    return Path(base64.b64decode(secret["data"]["VIDEOFLIX_FLAKY_DIR"]).decode())


def phase(p: Platform, name: str) -> str | None:
    return ((p.cr(name) or {}).get("status") or {}).get("phase")


def gated_jobs(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [j for j in jobs if j["metadata"]["labels"].get("videoflix.io/step") != "probe"]


def is_complete(job: dict[str, Any]) -> bool:
    conditions = (job.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Complete" and c["status"] == "True" for c in conditions)


def test_results_of_jobs_that_finished_and_vanished_while_the_operator_was_down(
    make_platform: Callable[..., Platform],  # noqa: F811
    sources: dict[str, Path],  # noqa: F811
    gated_image: str,
) -> None:
    p = make_platform(
        transcoder_image=gated_image, job_ttl_seconds="2", max_running_jobs="20"
    )
    gate = gate_dir(p)
    videos = [p.transcode(sources["tiny"]) for _ in range(VIDEOS)]
    # Every rendition and thumbnail Job released and running (held at the gate).
    wait_until(
        lambda: len(list(gate.glob("*.waiting"))) == VIDEOS * GATED_STEPS,
        "every gated step to run",
        timeout=90,
    )
    assert all(phase(p, name) == "Transcoding" for _, name in videos)

    p.operator.kill()
    # The first video's Jobs outlive their pods instead (kept, then their pods deleted below).
    kept = videos[0][1]
    # Only the gated steps' Jobs: the probe's finished before the kill and may or may not have
    # met its TTL yet, so keeping it would make the count below depend on timing.
    for job in gated_jobs(p.jobs(kept)):
        p.kube.client.patch(
            p.path("jobs", job["metadata"]["name"]), {"spec": {"ttlSecondsAfterFinished": None}}
        )
    (gate / "open").write_text("")

    # Finished while nobody watched: the TTL deletes the others' Jobs and pods.
    def all_finished() -> bool:
        kept_done = [j for j in gated_jobs(p.jobs(kept)) if is_complete(j)]
        others = [j for _, name in videos[1:] for j in p.jobs(name)]
        return len(kept_done) == GATED_STEPS and not others

    wait_until(all_finished, "the Jobs to finish and the TTL to delete them", timeout=90)
    for pod in p.pods(kept):
        p.kube.client.delete(p.path("pods", pod["metadata"]["name"]))
    wait_until(lambda: not p.pods(kept), "the kept Jobs' pods to be deleted", timeout=30)
    finished = VIDEOS * GATED_STEPS  # all gated Jobs are over: Complete or TTL-deleted
    stored = [
        k for vid, _ in videos for k in p.keys(vid) if k.startswith(storage.results_prefix(vid))
    ]
    assert len(stored) == VIDEOS * (GATED_STEPS + 1), stored  # + the probe's
    log_before = len(p.operator.log())

    started = time.monotonic()
    p.operator.start()
    for vid, name in videos:
        cr = p.wait_phase(name, "Succeeded", timeout=90)
        assert_status_and_row_agree(p, cr, vid)
        assert p.video(vid).processing_state == "ready"
        renditions = cr["status"]["renditions"]
        assert set(renditions) == {"120p"} and renditions["120p"]["output"]["file"] == (
            f"videos/{vid}/120p/video.mp4"
        )
        poster = cr["status"]["thumbnail"]["output"]["poster"]
        assert poster == f"videos/{vid}/thumbnails/poster.jpg"
    to_ready = time.monotonic() - started

    log = p.operator.log()[log_before:]
    recovered = log.count("Recovered the result of step")  # its Job was TTL-deleted
    podless = log.count("from storage: its pods are gone")  # the kept Jobs
    recorded = recovered + podless
    sys.stdout.write(
        f"\nresults recorded {recorded}/{finished} Jobs finished during the outage "
        f"({recovered} of TTL-deleted Jobs, {podless} of Jobs without pods); "
        f"all {VIDEOS} videos ready {to_ready:.1f} s after the restart\n"
    )
    assert recovered == (VIDEOS - 1) * GATED_STEPS, log[-3000:]
    assert podless == GATED_STEPS, log[-3000:]
    # Nothing was done twice, nothing reported as failed.
    assert "Created Job" not in log and "Re-running" not in log, log[-3000:]
    assert not [j for _, name in videos[1:] for j in p.jobs(name)]
