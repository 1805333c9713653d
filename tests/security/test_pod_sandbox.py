"""The transcoder Job pod is boxed in: restricted Pod Security admits it for real, it mounts no
ServiceAccount token, runs as non-root on a read-only root, and its NetworkPolicy allows no
ingress and egress only to DNS and the S3 endpoint.

The pod is the one the operator's builder renders (`builders.build_job`), created (not dry-run) on
the real control plane in a namespace labelled `pod-security.kubernetes.io/enforce=restricted`;
a scheduling gate keeps the local kubelet from starting it (admission is what is tested).
"""

from __future__ import annotations

import copy
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from videoflix_core.status import LADDER, PROBE
from videoflix_core.transcode import VideoTranscodeSpec
from videoflix_operator.builders import SCRATCH_DIR, Owner, build_job
from videoflix_operator.config import OperatorSettings

from tests.chart.helm import CHART, find, render
from tests.chart.test_cluster import Api, restricted_namespace
from tests.cluster.client import KubeApiError

pytestmark = pytest.mark.security

DEFAULT_VALUES = CHART / "ci" / "default-values.yaml"
TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
SETTINGS = OperatorSettings()


def job_pod(namespace: str, step: str) -> dict[str, Any]:
    """The Job's pod template as a Pod, exactly as the Job controller would create it."""
    spec = VideoTranscodeSpec.model_validate(
        {"videoId": 7, "source": {"bucket": "media", "key": "videos/7/source/a.mp4"}}
    )
    job = build_job(
        owner=Owner(name="video-7", namespace=namespace, uid="uid-7"),
        spec=spec, spec_hash="abcd1234", step=step, rungs=[], settings=SETTINGS,
    )
    template = copy.deepcopy(job["spec"]["template"])
    pod_spec = template["spec"]
    pod_spec["schedulingGates"] = [{"name": "videoflix.test/admission-only"}]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{job['metadata']['name']}-pod",
            "labels": template["metadata"]["labels"],
        },
        "spec": pod_spec,
    }


@pytest.fixture
def api(kube: Any) -> Iterator[Api]:
    client = Api(kube)
    yield client
    client.close()


@pytest.fixture
def restricted(kube: Any, api: Api) -> Iterator[str]:
    name = restricted_namespace(kube, api, f"sec-pods-{secrets.token_hex(3)}")
    # The Job pods' ServiceAccount, as the chart makes it (admission looks it up).
    kube.client.create(
        f"/api/v1/namespaces/{name}/serviceaccounts",
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": SETTINGS.job_service_account}, "automountServiceAccountToken": False},
    )
    yield name
    kube.delete_namespace(name)


def create_pod(kube: Any, namespace: str, pod: dict[str, Any]) -> dict[str, Any]:
    created: dict[str, Any] = kube.client.create(f"/api/v1/namespaces/{namespace}/pods", pod)
    return created


@pytest.mark.cluster
def test_job_pod_is_admitted_under_restricted_and_has_no_token(kube: Any, restricted: str) -> None:
    for step in (PROBE, LADDER):
        created = create_pod(kube, restricted, job_pod(restricted, step))
        spec = created["spec"]  # the server's view, after every admission plugin
        assert spec["automountServiceAccountToken"] is False
        assert spec["serviceAccountName"] == SETTINGS.job_service_account
        # No token volume was injected and nothing mounts the token path.
        assert not any("projected" in v for v in spec["volumes"]), spec["volumes"]
        [container] = spec["containers"]
        assert not any(m["mountPath"].startswith(TOKEN_PATH) for m in container["volumeMounts"])
        assert {m["mountPath"] for m in container["volumeMounts"]} == {SCRATCH_DIR, "/tmp"}
        # Non-root with a read-only root filesystem: only the emptyDirs are writable.
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] not in (None, 0)
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"]["drop"] == ["ALL"]
        assert all("emptyDir" in v for v in spec["volumes"])


@pytest.mark.cluster
def test_restricted_namespace_really_refuses_an_unsafe_pod(kube: Any, restricted: str) -> None:
    """The control: the same pod made root-capable is refused, so the admission above counted."""
    pod = job_pod(restricted, PROBE)
    pod["metadata"]["name"] += "-unsafe"
    [container] = pod["spec"]["containers"]
    container["securityContext"]["allowPrivilegeEscalation"] = True
    del pod["spec"]["securityContext"]["runAsNonRoot"]
    del container["securityContext"]["runAsNonRoot"]
    with pytest.raises(KubeApiError) as refused:
        create_pod(kube, restricted, pod)
    assert refused.value.status == 403 and "PodSecurity" in str(refused.value.body)


# --- NetworkPolicy of the Job pods ------------------------------------------------------------


def transcoder_policy(values: dict[str, Any] | None = None) -> dict[str, Any]:
    policy: dict[str, Any] = find(render([DEFAULT_VALUES], values), "NetworkPolicy", "-transcoder")
    return policy


def test_policy_selects_the_job_pods_and_admits_no_ingress() -> None:
    policy = transcoder_policy()
    selector = policy["spec"]["podSelector"]["matchLabels"]
    pod_labels = job_pod("x", PROBE)["metadata"]["labels"]
    assert selector and selector.items() <= pod_labels.items()  # it really selects them
    assert sorted(policy["spec"]["policyTypes"]) == ["Egress", "Ingress"]
    assert policy["spec"].get("ingress", []) == []


def test_policy_egress_is_dns_and_the_s3_endpoint_only() -> None:
    s3_peer = {"ipBlock": {"cidr": "10.20.30.40/32"}}
    policy = transcoder_policy({
        "networkPolicy.s3.to": [s3_peer],
        "networkPolicy.s3.ports": [{"port": 9000, "protocol": "TCP"}],
    })
    dns, s3 = policy["spec"]["egress"]
    assert sorted((p["port"], p["protocol"]) for p in dns["ports"]) == [(53, "TCP"), (53, "UDP")]
    assert dns["to"] == [{
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
        "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
    }]
    assert s3 == {"to": [s3_peer], "ports": [{"port": 9000, "protocol": "TCP"}]}

    # Default values: S3 anywhere, but on its port alone; still no third rule.
    dns, s3 = transcoder_policy()["spec"]["egress"]
    assert s3 == {"ports": [{"port": 443, "protocol": "TCP"}]}
    assert {p["port"] for p in dns["ports"]} == {53}
