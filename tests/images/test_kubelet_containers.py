"""The local kubelet's container mode (tests/cluster/containers.py) on its own: what a pod spec
says reaches the podman container, and what the container does comes back in the pod status."""

from __future__ import annotations

import time
from typing import Any

from tests.cluster.fixtures import Kube
from tests.fixtures.procs import wait_until
from tests.images import build
from tests.images.conftest import Images

Obj = dict[str, Any]

SCRIPT = """
caps=$(grep CapEff /proc/self/status | cut -f2)
if touch /probe 2>/dev/null; then ro=no; else ro=yes; fi
echo shared > /scratch/f
printf 'uid=%s gid=%s caps=%s ro=%s scratch=%s greeting=%s arg=%s' "$(id -u)" "$(id -g)" \
  "$caps" "$ro" "$(cat /scratch/f)" "$GREETING" "$1" > /dev/termination-log
exit 3
"""


def pod(name: str, image: str, args: list[str], **spec: Any) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": {"runAsNonRoot": True, "runAsUser": 10002, "runAsGroup": 10003},
            "containers": [
                {
                    "name": "main",
                    "image": image,
                    "command": ["sh", "-c"],
                    "args": args,
                    "env": [
                        {
                            "name": "GREETING",
                            "valueFrom": {"secretKeyRef": {"name": "greeting", "key": "text"}},
                        },
                        {"name": "WHO", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    ],
                    "securityContext": {
                        "readOnlyRootFilesystem": True,
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
                }
            ],
            "volumes": [{"name": "scratch", "emptyDir": {}}],
            **spec,
        },
    }


def test_a_pod_runs_in_a_container_with_its_spec_and_reports_its_termination_log(
    images: Images, kube: Kube, kube_namespace: str
) -> None:
    ns = kube_namespace
    base = f"/api/v1/namespaces/{ns}"
    kube.client.create(
        f"{base}/secrets",
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "greeting"},
         "stringData": {"text": "hello"}},
    )
    image = images.refs["transcoder"]
    with kube.kubelet.container_mode(images.container_mode()):
        kube.client.create(f"{base}/pods", pod("checks", image, [SCRIPT, "sh", "$(WHO)"]))
        kube.client.create(f"{base}/pods", pod("sleeper", image, ["sleep 300"]))

        def phase(name: str) -> str:
            return str((kube.client.get(f"{base}/pods/{name}").get("status") or {}).get("phase"))

        wait_until(lambda: phase("checks") == "Failed", "the checks pod to fail", timeout=60)
        wait_until(lambda: phase("sleeper") == "Running", "the sleeper to run", timeout=60)
        [status] = kube.client.get(f"{base}/pods/checks")["status"]["containerStatuses"]
        terminated = status["state"]["terminated"]
        assert terminated["exitCode"] == 3 and terminated["reason"] == "Error"
        assert terminated["message"] == (
            "uid=10002 gid=10003 caps=0000000000000000 ro=yes scratch=shared greeting=hello "
            "arg=checks"
        )
        assert status["containerID"] == f"podman://k8s_main_checks_{ns}_" + kube.client.get(
            f"{base}/pods/checks"
        )["metadata"]["uid"][:8]

        # Deleting a running pod stops its container (SIGTERM to PID 1) and removes it.
        [sleeper] = kube.client.get(f"{base}/pods/sleeper")["status"]["containerStatuses"]
        name = sleeper["containerID"].removeprefix("podman://")
        assert images.podman.run("container", "exists", name, check=False).returncode == 0
        started = time.monotonic()
        kube.client.delete(f"{base}/pods/sleeper")
        wait_until(
            lambda: kube.client.get_or_none(f"{base}/pods/sleeper") is None,
            "the sleeper pod to be gone",
            timeout=30,
        )
        assert images.podman.run("container", "exists", name, check=False).returncode == 1
        assert time.monotonic() - started < 15


def test_a_root_image_is_refused_under_run_as_non_root(
    images: Images, kube: Kube, kube_namespace: str
) -> None:
    base = f"/api/v1/namespaces/{kube_namespace}"
    kube.client.create(
        f"{base}/secrets",
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "greeting"},
         "stringData": {"text": "hello"}},
    )
    # The Debian base runs as root: without runAsUser, runAsNonRoot must stop the pod.
    spec = pod("rooted", build.DEBIAN_BASE.ref(), ["true"])
    spec["spec"]["securityContext"] = {"runAsNonRoot": True}
    with kube.kubelet.container_mode(images.container_mode()):
        kube.client.create(f"{base}/pods", spec)

        def waiting() -> Obj:
            status = kube.client.get(f"{base}/pods/rooted").get("status") or {}
            [container] = status.get("containerStatuses") or [{}]
            return dict(container.get("state", {}).get("waiting") or {})

        wait_until(lambda: bool(waiting()), "the pod to wait", timeout=30)
        assert waiting()["reason"] == "CreateContainerConfigError"
        assert "runAsNonRoot" in waiting()["message"]
