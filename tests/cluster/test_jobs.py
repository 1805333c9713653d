"""The real Job controller and garbage collector acting on pods run by the local kubelet."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.client import KubeApiError, Obj
from tests.cluster.fixtures import Kube
from tests.cluster.objects import (
    container,
    job,
    jobs_path,
    pods_path,
    process_alive,
    python_container,
    terminated,
)


@pytest.fixture(autouse=True)
def _no_kubelet_errors(kube: Kube) -> Iterator[None]:
    before = len(kube.kubelet.errors)
    yield
    assert kube.kubelet.errors[before:] == []


def test_job_exiting_0_completes_with_its_termination_message(
    kube: Kube, kube_namespace: str
) -> None:
    script = 'echo working; printf \'{"result": "ok"}\' > "$VIDEOFLIX_RESULT_FILE"'
    kube.client.create(jobs_path(kube_namespace), job("ok", [container(script)]))

    done = kube.wait_for_job(kube_namespace, "ok", "Complete")

    assert done["status"]["succeeded"] == 1
    (pod,) = kube.job_pods(kube_namespace, "ok")
    assert pod["spec"]["nodeName"] == kube.kubelet.node_name
    assert pod["status"]["phase"] == "Succeeded"
    state = terminated(pod)
    assert (state["exitCode"], state["reason"]) == (0, "Completed")
    assert json.loads(state["message"]) == {"result": "ok"}
    assert kube.kubelet.logs(kube_namespace, pod["metadata"]["name"]) == "working\n"


def test_exit_2_with_pod_failure_policy_failjob_fails_at_once(
    kube: Kube, kube_namespace: str
) -> None:
    policy = {"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [2]}}]}
    # The path argument names the pod's terminationMessagePath: the kubelet maps it to a
    # temp file, so nothing is written to this machine's /dev.
    code = 'import sys; open(sys.argv[1], "w").write(\'{"error": "not a video"}\'); sys.exit(2)'
    bad_input = python_container(
        code, args=["/run/result.json"], terminationMessagePath="/run/result.json"
    )
    manifest = job(
        "bad-input",
        [bad_input],
        backoff_limit=5,
        podFailurePolicy=policy,
    )
    kube.client.create(jobs_path(kube_namespace), manifest)

    failed = kube.wait_for_job(kube_namespace, "bad-input", "Failed")

    (condition,) = [c for c in failed["status"]["conditions"] if c["type"] == "Failed"]
    assert condition["reason"] == "PodFailurePolicy"
    (pod,) = kube.job_pods(kube_namespace, "bad-input")  # no retry despite backoffLimit 5
    state = terminated(pod)
    assert state["exitCode"] == 2
    assert json.loads(state["message"]) == {"error": "not a video"}


def test_backoff_limit_retries_a_failed_pod(
    kube: Kube, kube_namespace: str, tmp_path: Path
) -> None:
    marker = tmp_path / "attempted"
    script = f"if [ -e {marker} ]; then exit 0; fi; touch {marker}; exit 1"
    kube.client.create(
        jobs_path(kube_namespace), job("flaky", [container(script)], backoff_limit=2)
    )

    # The Job controller waits ~10 s before the first retry.
    done = kube.wait_for_job(kube_namespace, "flaky", "Complete", timeout=60)

    assert (done["status"]["failed"], done["status"]["succeeded"]) == (1, 1)
    first, second = kube.job_pods(kube_namespace, "flaky")
    assert (first["status"]["phase"], second["status"]["phase"]) == ("Failed", "Succeeded")
    assert terminated(first)["exitCode"] == 1


def test_exhausted_backoff_limit_fails_the_job(kube: Kube, kube_namespace: str) -> None:
    kube.client.create(jobs_path(kube_namespace), job("hopeless", [container("exit 3")]))

    failed = kube.wait_for_job(kube_namespace, "hopeless", "Failed")

    reasons = {c["type"]: c.get("reason") for c in failed["status"]["conditions"]}
    assert reasons["Failed"] == "BackoffLimitExceeded"
    assert terminated(kube.job_pods(kube_namespace, "hopeless")[0])["exitCode"] == 3


def test_deleting_the_owner_cascades_to_jobs_and_kills_their_processes(
    kube: Kube, kube_namespace: str
) -> None:
    owner = kube.client.create(
        f"/api/v1/namespaces/{kube_namespace}/configmaps",
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owner"}},
    )
    reference = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "owner",
        "uid": owner["metadata"]["uid"],
        "blockOwnerDeletion": True,
    }
    kube.client.create(
        jobs_path(kube_namespace),
        job("child", [container("sleep 300")], metadata={"ownerReferences": [reference]}),
    )
    pod = kube.client.wait_for(
        pods_path(kube_namespace),
        lambda pods: any(p["status"].get("phase") == "Running" for p in (pods or {})["items"]),
        what="child pod running",
    )
    assert pod is not None
    name = pod["items"][0]["metadata"]["name"]
    (pid,) = kube.kubelet.pids(kube_namespace, name)
    assert process_alive(pid)

    kube.client.delete(f"/api/v1/namespaces/{kube_namespace}/configmaps/owner")

    kube.client.wait_for(
        jobs_path(kube_namespace, "child"),
        lambda j: j is None,
        what="the garbage collector to delete the Job",
    )
    kube.client.wait_for(
        pods_path(kube_namespace, name),
        lambda p: p is None,
        what="the garbage collector to delete the pod",
    )
    deadline = time.monotonic() + 10
    while process_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not process_alive(pid)


def test_suspended_job_starts_no_pod_until_resumed(kube: Kube, kube_namespace: str) -> None:
    kube.client.create(jobs_path(kube_namespace), job("later", [container("exit 0")], suspend=True))
    kube.wait_for_job(kube_namespace, "later", "Suspended")
    assert kube.job_pods(kube_namespace, "later") == []

    kube.client.patch(jobs_path(kube_namespace, "later"), {"spec": {"suspend": False}})

    kube.wait_for_job(kube_namespace, "later", "Complete")
    assert len(kube.job_pods(kube_namespace, "later")) == 1


def test_ttl_after_finished_deletes_the_job_and_its_pods(kube: Kube, kube_namespace: str) -> None:
    kube.client.create(
        jobs_path(kube_namespace),
        job("short-lived", [container("exit 0")], ttlSecondsAfterFinished=0),
    )

    kube.client.wait_for(
        jobs_path(kube_namespace, "short-lived"),
        lambda j: j is None,
        what="the TTL controller to delete the Job",
    )
    kube.client.wait_for(
        pods_path(kube_namespace),
        lambda pods: not (pods or {}).get("items"),
        what="the Job's pods to go",
    )


def test_pod_active_deadline_kills_the_process(kube: Kube, kube_namespace: str) -> None:
    kube.client.create(
        jobs_path(kube_namespace),
        job("slow", [container("sleep 120")], pod_spec={"activeDeadlineSeconds": 2}),
    )

    kube.wait_for_job(kube_namespace, "slow", "Failed", timeout=30)

    (pod,) = kube.job_pods(kube_namespace, "slow")
    assert pod["status"]["phase"] == "Failed"
    assert pod["status"]["reason"] == "DeadlineExceeded"
    assert kube.kubelet.pids(kube_namespace, pod["metadata"]["name"]) == []


def test_unknown_images_are_refused_with_a_clear_pod_failure(
    kube: Kube, kube_namespace: str
) -> None:
    kube.client.create(
        jobs_path(kube_namespace),
        job("foreign", [{"name": "main", "image": "docker.io/library/busybox:1.36"}]),
    )

    kube.wait_for_job(kube_namespace, "foreign", "Failed")

    (pod,) = kube.job_pods(kube_namespace, "foreign")
    assert pod["status"]["reason"] == "ImageNotMapped"
    assert "docker.io/library/busybox:1.36" in pod["status"]["message"]
    assert "videoflix-transcoder" in pod["status"]["message"]


def test_api_validation_is_real(kube: Kube, kube_namespace: str) -> None:
    bad = job("Not_A_Name", [container("exit 0")])
    with pytest.raises(KubeApiError) as refused:
        kube.client.create(jobs_path(kube_namespace), bad)
    assert refused.value.status == 422


def test_indexed_job_runs_each_index_once_and_retries_a_failed_index_alone(
    kube: Kube, kube_namespace: str, tmp_path: Path
) -> None:
    """What a chunked rendition needs of the Job controller and this kubelet (issue 14): each pod
    gets its index, a transient failure retries only its own index, within its own budget."""
    flaky_index = 2
    marker = tmp_path / "index-2-attempted"
    # Index 2 fails once (exit 1); exit 2 would fail its index at once (the operator's rule).
    script = (
        f'if [ "$JOB_COMPLETION_INDEX" = {flaky_index} ] && [ ! -e {marker} ]; then '
        f"touch {marker}; exit 1; fi; "
        'printf \'{"index": %s}\' "$JOB_COMPLETION_INDEX" > "$VIDEOFLIX_RESULT_FILE"'
    )
    policy = {"rules": [{"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [2]}}]}
    manifest = job(
        "chunks",
        [container(script)],
        completionMode="Indexed",
        completions=4,
        parallelism=2,
        backoffLimitPerIndex=1,
        podReplacementPolicy="Failed",
        podFailurePolicy=policy,
    )
    del manifest["spec"]["backoffLimit"]  # with backoffLimitPerIndex, the per-index budget rules
    kube.client.create(jobs_path(kube_namespace), manifest)

    # The Job controller waits ~10 s before the retry.
    done = kube.wait_for_job(kube_namespace, "chunks", "Complete", timeout=90)

    status = done["status"]
    assert status["completedIndexes"] == "0-3" and not status.get("failedIndexes"), status
    assert (status["succeeded"], status["failed"]) == (4, 1)
    pods: dict[int, list[Obj]] = {}
    for pod in kube.job_pods(kube_namespace, "chunks"):
        index = int(pod["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"])
        pods.setdefault(index, []).append(pod)
    phases = {i: sorted(p["status"]["phase"] for p in ps) for i, ps in pods.items()}
    once = ["Succeeded"]
    assert phases == {0: once, 1: once, 2: ["Failed", "Succeeded"], 3: once}
    for index, attempts in pods.items():
        (succeeded,) = [p for p in attempts if p["status"]["phase"] == "Succeeded"]
        assert json.loads(terminated(succeeded)["message"]) == {"index": index}
