"""The control plane's own lifecycle: warm start time, kubeconfig, and a clean stop."""

from __future__ import annotations

import time
from pathlib import Path

import kubernetes
import pytest
import yaml

from tests.cluster.controlplane import ControlPlane, binaries_dir
from tests.cluster.fixtures import Kube
from tests.cluster.objects import process_alive, processes_mentioning

WARM_START_TARGET = 15.0


@pytest.mark.cluster
def test_a_second_control_plane_starts_warm_and_stops_without_strays(
    kube: Kube, tmp_path: Path
) -> None:
    # `kube` first: it owns the skip/fail decision when binaries cannot be built.
    plane = ControlPlane(workdir=tmp_path / "plane", binaries=binaries_dir())
    started = time.monotonic()
    plane.start()
    try:
        elapsed = time.monotonic() - started
        client = plane.client()
        try:
            assert client.get("/version")["gitVersion"].startswith("v1.")
        finally:
            client.close()
        pids = {name: p.pid for name, p in plane.processes.items()}
        assert len(processes_mentioning(str(tmp_path / "plane"))) == 3
        assert set(pids) == {"etcd", "kube-apiserver", "kube-controller-manager"}
        assert elapsed < WARM_START_TARGET, f"warm start took {elapsed:.1f}s"
        print(f"warm control-plane start: {elapsed:.1f}s")
    finally:
        plane.stop()
    assert not [name for name, pid in pids.items() if process_alive(pid)]
    assert processes_mentioning(str(tmp_path / "plane")) == []


def test_kubeconfig_works_for_other_clients(kube: Kube) -> None:
    """The official Python client (which kopf also reads kubeconfigs like) connects with it."""
    config = yaml.safe_load(Path(kube.kubeconfig).read_text())
    assert config["clusters"][0]["cluster"]["server"] == kube.server
    api_client = kubernetes.config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=kube.kubeconfig
    )
    try:
        nodes = kubernetes.client.CoreV1Api(api_client).list_node()
    finally:
        api_client.close()
    (node,) = nodes.items
    assert node.metadata is not None and node.metadata.name == kube.kubelet.node_name
    conditions = {c.type: c.status for c in (node.status.conditions or [])} if node.status else {}
    assert conditions["Ready"] == "True"


@pytest.mark.cluster
def test_a_failed_start_reports_the_log_and_leaves_nothing_running(
    kube: Kube, tmp_path: Path
) -> None:
    workdir = tmp_path / "plane"
    plane = ControlPlane(
        workdir=workdir, binaries=binaries_dir(), extra_apiserver_flags=["--no-such-flag"]
    )

    with pytest.raises(RuntimeError, match=r"kube-apiserver exited(.|\n)*no-such-flag"):
        plane.start(timeout=30)

    assert plane.processes == {}
    assert processes_mentioning(str(workdir)) == []  # etcd was stopped too
