"""pytest fixtures for the real Kubernetes control plane (load as plugin `tests.cluster.fixtures`).

- session `kube`: etcd + kube-apiserver + kube-controller-manager + the local kubelet, with the
  repo's CRDs (crds/*.yaml) installed. `.kubeconfig`, `.server`, `.client`, `.kubelet`,
  `.namespace_for(request)`, `.apply_crds()`.
- function `kube_namespace`: a fresh namespace per test (deleted afterwards).

Without Go (and without cached binaries) the cluster tests skip with one line saying what to
install; with CI=true they fail instead.
"""

from __future__ import annotations

import copy
import logging
import os
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from .client import KubeApiError, KubeClient
from .controlplane import (
    GO_HINT,
    REPO_ROOT,
    BinariesUnavailable,
    ControlPlane,
    binaries_dir,
    cached_binaries_dir,
)
from .kubelet import LocalKubelet
from .objects import HARNESS_CRDS

log = logging.getLogger(__name__)
Obj = dict[str, Any]

# The CRDs installed at start; override to test another copy (e.g. the chart's).
CRD_DIR = Path(os.environ.get("VIDEOFLIX_TEST_CRD_DIR") or REPO_ROOT / "crds")
CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


class InvalidCrd(Exception):
    """A CRD of the repo that the real API server refuses (a bug in the CRD)."""


def missing_binaries_outcome(ci: str | None) -> str:
    """ "fail" under CI (a missing toolchain must not pass silently there), else "skip"."""
    return "fail" if (ci or "").strip().lower() in ("true", "1", "yes") else "skip"


def namespace_name(test_name: str) -> str:
    """A DNS-1123 label from a test name, unique per call."""
    base = re.sub(r"[^a-z0-9-]+", "-", test_name.lower()).strip("-")[:48].strip("-") or "test"
    return f"{base}-{secrets.token_hex(3)}"


def crd_documents(paths: Iterable[Path]) -> list[Obj]:
    docs = []
    for path in paths:
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                docs.append(doc)
    return docs


def has_condition(job: Obj | None, kind: str) -> bool:
    conditions = ((job or {}).get("status") or {}).get("conditions") or []
    return any(c.get("type") == kind and c.get("status") == "True" for c in conditions)


def apply_crd(client: KubeClient, crd: Obj, *, timeout: float = 30) -> str:
    """Server-side apply one CRD and wait until it is established."""
    name = str(crd["metadata"]["name"])
    client.apply(f"{CRD_PATH}/{name}", crd)
    client.wait_for(
        f"{CRD_PATH}/{name}",
        lambda obj: has_condition(obj, "Established") and has_condition(obj, "NamesAccepted"),
        timeout=timeout,
        what=f"CRD {name} established",
    )
    return name


def apply_crds(client: KubeClient, paths: Iterable[Path] | None = None) -> list[str]:
    if paths is None:
        paths = sorted(CRD_DIR.glob("*.yaml")) + sorted(CRD_DIR.glob("*.yml"))
    names, errors = [], []
    for path in paths:
        for doc in crd_documents([path]):
            try:
                names.append(apply_crd(client, doc))
            except KubeApiError as error:
                errors.append(f"{path}: the API server refused the CRD: {error}")
    if errors:
        raise InvalidCrd("\n".join(errors))
    return names


@dataclass
class Kube:
    control_plane: ControlPlane
    kubelet: LocalKubelet
    client: KubeClient
    timings: dict[str, float] = field(default_factory=dict)
    # CRDs of the repo the API server refused at start (see test_repo_crds_are_installed).
    crd_errors: list[str] = field(default_factory=list)

    @property
    def kubeconfig(self) -> str:
        return self.control_plane.kubeconfig

    @property
    def server(self) -> str:
        return self.control_plane.server

    @property
    def token(self) -> str:
        return self.control_plane.token

    @property
    def ca_file(self) -> str:
        return self.control_plane.ca_file

    def env(self) -> dict[str, str]:
        """Env for a subprocess (e.g. the operator) that should talk to this cluster."""
        return {"KUBECONFIG": self.kubeconfig}

    def new_client(self) -> KubeClient:
        return self.control_plane.client()

    # --- namespaces -----------------------------------------------------------------------

    def create_namespace(self, name: str) -> str:
        self.client.create(
            "/api/v1/namespaces",
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {
                    "name": name,
                    "labels": {"app.kubernetes.io/managed-by": "videoflix-tests"},
                },
            },
        )
        # Pods are refused until the ServiceAccount controller has made "default", and wait
        # for the kube-root-ca.crt ConfigMap their token volume references; waiting here keeps
        # the Job controller's pod-creation backoff out of every test.
        for path in ("serviceaccounts/default", "configmaps/kube-root-ca.crt"):
            self.client.wait_for(
                f"/api/v1/namespaces/{name}/{path}",
                lambda obj: obj is not None,
                timeout=30,
                what=f"{path} in namespace {name}",
            )
        return name

    def namespace_for(self, request: pytest.FixtureRequest | str) -> str:
        """Create a fresh namespace named after a test (caller deletes it)."""
        test = request if isinstance(request, str) else request.node.name
        return self.create_namespace(namespace_name(test))

    def delete_namespace(self, name: str, *, wait: bool = False, timeout: float = 60) -> None:
        self.client.delete(f"/api/v1/namespaces/{name}")
        if wait:
            self.client.wait_for(
                f"/api/v1/namespaces/{name}",
                lambda ns: ns is None,
                timeout=timeout,
                what=f"namespace {name} to go",
            )

    # --- CRDs -----------------------------------------------------------------------------

    def apply_crds(self, paths: Iterable[Path] | None = None) -> list[str]:
        """(Re)apply CRDs (default: every crds/*.yaml of the repo) and wait until served.

        Every valid CRD is applied; refused ones raise InvalidCrd afterwards, naming the file
        and the API server's reason. The garbage collector notices a CRD that is new since
        session start within 30 s, or at once after `control_plane.restart_controller_manager()`.
        """
        return apply_crds(self.client, paths)

    def apply_crd(self, crd: Obj, *, timeout: float = 30) -> str:
        return apply_crd(self.client, crd, timeout=timeout)

    # --- Jobs -----------------------------------------------------------------------------

    def wait_for_job(
        self, namespace: str, name: str, condition: str = "Complete", *, timeout: float = 60
    ) -> Obj:
        """Wait until a Job has the condition (Complete, Failed, Suspended, …) set True.

        Fails early when the Job reaches the other terminal condition.
        """
        other = {"Complete": "Failed", "Failed": "Complete"}.get(condition)

        def done(job: Obj | None) -> bool:
            if other and has_condition(job, other):
                raise AssertionError(
                    f"Job {namespace}/{name} is {other}, expected {condition}: "
                    f"{(job or {}).get('status')}"
                )
            return has_condition(job, condition)

        job = self.client.wait_for(
            f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}",
            done,
            timeout=timeout,
            what=f"Job {namespace}/{name} {condition}",
        )
        assert job is not None
        return job

    def job_pods(self, namespace: str, job: str) -> list[Obj]:
        listing = self.client.get(
            f"/api/v1/namespaces/{namespace}/pods",
            labelSelector=f"batch.kubernetes.io/job-name={job}",
        )
        items: list[Obj] = listing.get("items", [])
        return sorted(items, key=lambda p: p["metadata"]["creationTimestamp"])


def start_kube(workdir: Path) -> Kube:
    began = time.monotonic()
    control_plane = ControlPlane(workdir=workdir, binaries=binaries_dir())
    crd_errors: list[str] = []

    def install_crds() -> None:
        client = control_plane.client()
        try:
            for crd in HARNESS_CRDS:
                apply_crd(client, copy.deepcopy(crd))
            apply_crds(client)
        except InvalidCrd as error:
            # One broken CRD must not take down every cluster test: the CRD test reports it.
            crd_errors.append(str(error))
            log.error("%s", error)
        finally:
            client.close()

    control_plane.start(before_controllers=install_crds)
    try:
        kubelet = LocalKubelet(control_plane.client, workdir / "kubelet")
        kube = Kube(
            control_plane=control_plane,
            kubelet=kubelet,
            client=control_plane.client(),
            crd_errors=crd_errors,
        )
    except BaseException:
        control_plane.stop()
        raise
    try:
        kubelet.start()
        # The "default" ServiceAccount appearing proves the controller manager is up.
        kube.client.wait_for(
            "/api/v1/namespaces/default/serviceaccounts/default",
            lambda sa: sa is not None,
            timeout=60,
            what="kube-controller-manager to start",
        )
    except BaseException:
        stop_kube(kube)
        raise
    kube.timings = dict(control_plane.timings)
    kube.timings["ready"] = time.monotonic() - began
    log.info("Started Kubernetes test control plane in %.1f s", kube.timings["ready"])
    return kube


def stop_kube(kube: Kube) -> None:
    try:
        kube.kubelet.stop()
    finally:
        kube.client.close()
        kube.control_plane.stop()


_started: list[Kube] = []


@pytest.fixture(scope="session")
def kube() -> Iterator[Kube]:
    try:
        binaries_dir()
    except BinariesUnavailable as error:
        if missing_binaries_outcome(os.environ.get("CI")) == "fail":
            pytest.fail(f"{error} (CI=true: not skipping)", pytrace=False)
        pytest.skip(str(error))
    workdir = Path(tempfile.mkdtemp(prefix="videoflix-kube-"))
    try:
        kube = start_kube(workdir)
        _started.append(kube)
        try:
            yield kube
        finally:
            stop_kube(kube)
    finally:
        if os.environ.get("VIDEOFLIX_KEEP_CLUSTER_DIR"):
            log.warning("Kept the test cluster's dir (logs, pod output): %s", workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def kube_namespace(kube: Kube, request: pytest.FixtureRequest) -> Iterator[str]:
    name = kube.namespace_for(request)
    yield name
    try:
        kube.delete_namespace(name)
    except KubeApiError as error:  # the session may be ending; never mask the test's result
        log.warning("Could not delete namespace %s: %s", name, error)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # `-m "not cluster"` deselects everything that needs the control plane.
    cluster = [
        item
        for item in items
        if {"kube", "kube_namespace"} & set(getattr(item, "fixturenames", ()))
    ]
    for item in cluster:
        item.add_marker(pytest.mark.cluster)
    # A skip marker (rather than a skip in the fixture) folds into one summary line per file.
    if (
        cluster
        and missing_binaries_outcome(os.environ.get("CI")) == "skip"
        and cached_binaries_dir() is None
        and shutil.which("go") is None
    ):
        for item in cluster:
            item.add_marker(pytest.mark.skip(reason=GO_HINT))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for kube in _started:
        timings = ", ".join(f"{k} {v:.1f}s" for k, v in kube.timings.items())
        terminalreporter.write_line(f"kubernetes test control plane: {timings}")
        for error in kube.crd_errors:
            terminalreporter.write_line(f"kubernetes test control plane: {error}", red=True)
