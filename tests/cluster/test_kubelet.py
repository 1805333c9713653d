"""The local kubelet end to end: env, volumes, deletion, restarts, fast mode."""

from __future__ import annotations

import base64
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.fixtures import Kube
from tests.cluster.kubelet import FastResult
from tests.cluster.objects import (
    TEST_IMAGE,
    Obj,
    container,
    job,
    jobs_path,
    pods_path,
    process_alive,
    python_container,
    terminated,
)
from tests.cluster.podenv import ImageMapping


@pytest.fixture(autouse=True)
def _no_kubelet_errors(kube: Kube) -> Iterator[None]:
    before = len(kube.kubelet.errors)
    yield
    assert kube.kubelet.errors[before:] == []


def create_pod(
    kube: Kube, namespace: str, name: str, containers: list[Obj], **spec: object
) -> None:
    kube.client.create(
        pods_path(namespace),
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": "t"}},
            "spec": {"restartPolicy": "Never", "containers": containers, **spec},
        },
    )


def wait_phase(kube: Kube, namespace: str, name: str, *phases: str, timeout: float = 30) -> Obj:
    pod = kube.client.wait_for(
        pods_path(namespace, name),
        lambda p: p is not None and p["status"].get("phase") in phases,
        timeout=timeout,
        what=f"pod {name} {'/'.join(phases)}",
    )
    assert pod is not None
    return pod


DUMP_ENV = """
import json, os, pathlib
scratch = pathlib.Path(os.environ["VIDEOFLIX_SCRATCH_DIR"])
scratch.mkdir(parents=True, exist_ok=True)
(scratch / "probe.txt").write_text("written")
keys = ["PLAIN", "FROM_SECRET", "FROM_CM", "CFG_MODE", "POD_NAME", "POD_NS", "APP", "CPU_MILLI",
        "CPU", "JOINED", "VIDEOFLIX_SCRATCH_DIR", "VIDEOFLIX_RESULT_FILE", "HOME"]
result = {k: os.environ.get(k) for k in keys}
result["leaked"] = "VIRTUAL_ENV" in os.environ or "PYTEST_CURRENT_TEST" in os.environ
result["scratch_exists"] = (scratch / "probe.txt").is_file()
pathlib.Path(os.environ["VIDEOFLIX_RESULT_FILE"]).write_text(json.dumps(result))
"""


def test_pod_env_is_resolved_and_mount_paths_are_host_paths(
    kube: Kube, kube_namespace: str
) -> None:
    ns = kube_namespace
    kube.client.create(
        f"/api/v1/namespaces/{ns}/secrets",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "s3"},
            "data": {"secret-key": base64.b64encode(b"hunter2").decode()},
        },
    )
    kube.client.create(
        f"/api/v1/namespaces/{ns}/configmaps",
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "settings"},
            "data": {"level": "debug", "MODE": "fast"},
        },
    )
    env = [
        {"name": "PLAIN", "value": "plain"},
        {"name": "FROM_SECRET", "valueFrom": {"secretKeyRef": {"name": "s3", "key": "secret-key"}}},
        {"name": "FROM_CM", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "level"}}},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
        {
            "name": "CPU_MILLI",
            "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1m"}},
        },
        {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
        {"name": "JOINED", "value": "$(POD_NS)/$(CFG_MODE)"},
        {"name": "VIDEOFLIX_SCRATCH_DIR", "value": "/scratch/work"},
    ]
    main = python_container(
        DUMP_ENV,
        env=env,
        envFrom=[{"configMapRef": {"name": "settings"}, "prefix": "CFG_"}],
        resources={"limits": {"cpu": "1500m", "memory": "256Mi"}},
        volumeMounts=[{"name": "scratch", "mountPath": "/scratch"}],
    )
    create_pod(kube, ns, "env", [main], volumes=[{"name": "scratch", "emptyDir": {}}])

    pod = wait_phase(kube, ns, "env", "Succeeded", "Failed")

    state = terminated(pod)
    assert state["exitCode"] == 0, kube.kubelet.logs(ns, "env")
    result = json.loads(state["message"])
    scratch = result.pop("VIDEOFLIX_SCRATCH_DIR")
    result_file = result.pop("VIDEOFLIX_RESULT_FILE")
    home = result.pop("HOME")
    assert result == {
        "PLAIN": "plain",
        "FROM_SECRET": "hunter2",
        "FROM_CM": "debug",
        "CFG_MODE": "fast",
        "POD_NAME": "env",
        "POD_NS": ns,
        "APP": "t",
        "CPU_MILLI": "1500",
        "CPU": "2",
        "JOINED": f"{ns}/fast",
        "leaked": False,
        "scratch_exists": True,
    }
    pod_dir = kube.kubelet.pod_dir(ns, "env")
    assert pod_dir is not None
    # The emptyDir mount became a host dir under the pod's dir; the env value followed it.
    assert scratch == str(pod_dir / "volumes" / "scratch" / "work")
    assert Path(result_file).parent == pod_dir and Path(home).parent == pod_dir


def test_missing_secret_keeps_the_pod_pending_until_it_exists(
    kube: Kube, kube_namespace: str
) -> None:
    ns = kube_namespace
    env = [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "later", "key": "t"}}}]
    create_pod(kube, ns, "waits", [container('test "$TOKEN" = yes', env=env)])
    pod = kube.client.wait_for(
        pods_path(ns, "waits"),
        lambda p: "waiting" in str(((p or {}).get("status") or {}).get("containerStatuses")),
        what="pod waiting for its secret",
    )
    assert pod is not None
    waiting = pod["status"]["containerStatuses"][0]["state"]["waiting"]
    assert waiting == {
        "reason": "CreateContainerConfigError",
        "message": 'secret "later" not found',
    }

    kube.client.create(
        f"/api/v1/namespaces/{ns}/secrets",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "later"},
            "stringData": {"t": "yes"},
        },
    )

    pod = wait_phase(kube, ns, "waits", "Succeeded", "Failed")
    assert terminated(pod)["exitCode"] == 0


def test_deleting_a_running_pod_stops_its_process_tree(
    kube: Kube, kube_namespace: str, tmp_path: Path
) -> None:
    ns = kube_namespace
    # A child process too: the kubelet stops the whole process group, as a runtime would.
    pidfile = tmp_path / "child.pid"
    create_pod(kube, ns, "busy", [container(f"sleep 300 & echo $! > {pidfile}; wait")])
    wait_phase(kube, ns, "busy", "Running")
    (pid,) = kube.kubelet.pids(ns, "busy")
    deadline = time.monotonic() + 10
    while not pidfile.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    child = int(pidfile.read_text())

    kube.client.delete(pods_path(ns, "busy"))

    kube.client.wait_for(pods_path(ns, "busy"), lambda p: p is None, what="pod deleted")
    assert not process_alive(pid)
    deadline = time.monotonic() + 5
    while process_alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not process_alive(child)
    assert f"{ns}/busy" not in kube.kubelet.running()


def test_restart_policy_on_failure_restarts_the_container(
    kube: Kube, kube_namespace: str, tmp_path: Path
) -> None:
    marker = tmp_path / "once"
    create_pod(
        kube,
        kube_namespace,
        "again",
        [container(f"[ -e {marker} ] && exit 0; touch {marker}; exit 7")],
        restartPolicy="OnFailure",
    )

    pod = wait_phase(kube, kube_namespace, "again", "Succeeded", "Failed")

    (status,) = pod["status"]["containerStatuses"]
    assert pod["status"]["phase"] == "Succeeded"
    assert status["restartCount"] == 1
    assert status["lastState"]["terminated"]["exitCode"] == 7


def test_fallback_to_logs_on_error_reports_the_log_tail(kube: Kube, kube_namespace: str) -> None:
    create_pod(
        kube,
        kube_namespace,
        "noisy",
        [
            container(
                "echo first; echo 'ffmpeg: broken input' >&2; exit 1",
                terminationMessagePolicy="FallbackToLogsOnError",
            )
        ],
    )

    pod = wait_phase(kube, kube_namespace, "noisy", "Failed")

    assert terminated(pod)["message"] == "first\nffmpeg: broken input\n"


def test_fast_mode_completes_many_jobs_at_once(kube: Kube, kube_namespace: str) -> None:
    count = 150

    def result(pod: Obj) -> FastResult:
        name = pod["metadata"]["labels"]["batch.kubernetes.io/job-name"]
        index = int(name.rsplit("-", 1)[1])
        if index % 50 == 0:
            return FastResult(2, json.dumps({"error": f"bad {index}"}))
        return FastResult(0, json.dumps({"job": name}))

    policy = {"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [2]}}]}
    started = time.monotonic()
    with kube.kubelet.fast_mode(result):
        for i in range(count):
            kube.client.create(
                jobs_path(kube_namespace),
                job(
                    f"scale-{i}",
                    [{"name": "main", "image": TEST_IMAGE}],
                    backoff_limit=3,
                    podFailurePolicy=policy,
                ),
            )

        def finished(listing: Obj | None) -> bool:
            items = (listing or {}).get("items") or []
            return count == sum(
                any(
                    c["status"] == "True" and c["type"] in ("Complete", "Failed")
                    for c in j.get("status", {}).get("conditions", [])
                )
                for j in items
            )

        listing = kube.client.wait_for(
            jobs_path(kube_namespace),
            finished,
            timeout=120,
            interval=0.5,
            what=f"{count} Jobs to finish",
        )
    elapsed = time.monotonic() - started
    assert listing is not None
    failed = sorted(
        j["metadata"]["name"]
        for j in listing["items"]
        if any(c["type"] == "Failed" and c["status"] == "True" for c in j["status"]["conditions"])
    )
    assert failed == ["scale-0", "scale-100", "scale-50"]
    pods = kube.client.get(pods_path(kube_namespace))["items"]
    assert len(pods) == count  # exit 2 failed its Job at once: no retries anywhere
    messages = {
        p["metadata"]["labels"]["batch.kubernetes.io/job-name"]: terminated(p)["message"]
        for p in pods
    }
    assert json.loads(messages["scale-7"]) == {"job": "scale-7"}
    print(f"fast mode: {count} Jobs finished in {elapsed:.1f}s ({count / elapsed:.0f} Jobs/s)")


def test_extra_image_mappings_run_their_entrypoint(kube: Kube, kube_namespace: str) -> None:
    echo = ImageMapping(
        match="videoflix-test-echo",
        entrypoint=(sys.executable, "-c", "import sys; print(' '.join(sys.argv[1:]))"),
    )
    with kube.kubelet.mapped_image(echo):
        create_pod(
            kube,
            kube_namespace,
            "echo",
            [
                {
                    "name": "main",
                    "image": "registry.example/videoflix-test-echo:1",
                    "args": ["hello", "$(WHO)"],
                    "env": [{"name": "WHO", "value": "world"}],
                }
            ],
        )
        wait_phase(kube, kube_namespace, "echo", "Succeeded")
    assert kube.kubelet.logs(kube_namespace, "echo") == "hello world\n"
    assert echo not in kube.kubelet.images


def test_an_entrypoint_that_cannot_start_fails_the_pod_with_start_error(
    kube: Kube, kube_namespace: str
) -> None:
    broken = {"name": "main", "image": TEST_IMAGE, "command": ["/nonexistent/entrypoint"]}
    create_pod(kube, kube_namespace, "broken", [broken])

    pod = wait_phase(kube, kube_namespace, "broken", "Failed")

    state = terminated(pod)
    assert (state["exitCode"], state["reason"]) == (128, "StartError")
    assert "/nonexistent/entrypoint" in state["message"]


def test_pod_logs_are_served_through_the_api_server(kube: Kube, kube_namespace: str) -> None:
    """`read_namespaced_pod_log` (kubectl logs) reaches the local kubelet's log endpoint."""
    from kubernetes import client, config

    ns = kube_namespace
    create_pod(
        kube,
        ns,
        "talker",
        [container("for i in 1 2 3 4 5; do echo line-$i; done; sleep 30", name="main")],
    )
    wait_phase(kube, ns, "talker", "Running")
    api = config.new_client_from_config(config_file=kube.kubeconfig)  # type: ignore[no-untyped-call]
    try:
        core = client.CoreV1Api(api)
        deadline = time.monotonic() + 15
        text = ""
        while "line-5" not in text and time.monotonic() < deadline:
            text = core.read_namespaced_pod_log("talker", ns, container="main")
            time.sleep(0.2)
        assert text.splitlines() == [f"line-{i}" for i in range(1, 6)]
        tail = core.read_namespaced_pod_log("talker", ns, container="main", tail_lines=2)
        assert tail.splitlines() == ["line-4", "line-5"]
        limited = core.read_namespaced_pod_log("talker", ns, container="main", limit_bytes=8)
        assert limited == "line-1\nl"
    finally:
        api.close()  # type: ignore[no-untyped-call]
        kube.client.delete(pods_path(ns, "talker"))
