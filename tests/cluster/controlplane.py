"""etcd + kube-apiserver + kube-controller-manager on free loopback ports in a temp dir.

The binaries come from tools/k8s/build.sh (pinned, cached per version outside the repo).
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import logging
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import yaml

from . import certs
from .client import KubeClient

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "tools" / "k8s" / "build.sh"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager")
# Only the controllers our objects need: no node-lifecycle controller (the local kubelet sends
# no heartbeats, so it would taint the node and evict pods), nothing cloud-related.
CONTROLLERS = (
    "job-controller",
    "cronjob-controller",
    "ttl-after-finished-controller",
    "garbage-collector-controller",
    "namespace-controller",
    "serviceaccount-controller",
    # Publishes kube-root-ca.crt, which every pod's service-account volume references.
    "root-ca-certificate-publisher-controller",
    "replicaset-controller",
    "deployment-controller",
    "pod-garbage-collector-controller",
    "resourcequota-controller",
)
GO_HINT = (
    "cluster tests need Go >= 1.21 (it fetches the pinned toolchain) to build kube-apiserver: "
    "install Go from https://go.dev/dl/ (or apt-get install golang-go), then run tools/k8s/build.sh"
)


class BinariesUnavailable(Exception):
    """The control-plane binaries are not built and cannot be built here (no Go)."""


def cached_binaries_dir() -> Path | None:
    """The cache dir when all binaries are already built (no Go needed then)."""
    k8s = etcd = None
    for line in (BUILD_SCRIPT.parent / "go.mod").read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "k8s.io/kubernetes":
            k8s = parts[1]
        if len(parts) == 2 and parts[0] == "go.etcd.io/etcd/server/v3":
            etcd = parts[1]
    if not k8s or not etcd:
        raise RuntimeError("tools/k8s/go.mod pins no k8s.io/kubernetes or etcd version")
    cache = Path(os.environ.get("VIDEOFLIX_CACHE") or Path.home() / ".cache" / "videoflix")
    directory = cache / f"k8s-{k8s}"
    return directory if all((directory / b).is_file() for b in BINARIES) else None


def binaries_dir(*, go_available: bool | None = None) -> Path:
    """Locate the binaries, building them with tools/k8s/build.sh on first use."""
    cached = cached_binaries_dir()
    if cached is not None:
        return cached
    if go_available is None:
        go_available = shutil.which("go") is not None
    if not go_available:
        raise BinariesUnavailable(GO_HINT)
    log.warning("Building the Kubernetes control plane (first run only): %s", BUILD_SCRIPT)
    result = subprocess.run([str(BUILD_SCRIPT)], check=False, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"tools/k8s/build.sh failed ({result.returncode}):\n{result.stderr}")
    return Path(result.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # If the test process dies without cleanup (SIGKILL, crash), the kernel stops the child too.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(
    argv: Sequence[str],
    *,
    log_file: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start a child in its own process group (so its whole tree can be stopped)."""
    out: IO[bytes]
    with log_file.open("ab") as out:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )


def stop_process(process: subprocess.Popen[Any], *, grace: float = 10.0) -> None:
    """SIGTERM the process group, SIGKILL it after the grace period."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace)
    # Children of the group may outlive its leader: always sweep the group.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@dataclass
class ControlPlane:
    workdir: Path
    binaries: Path
    extra_apiserver_flags: Sequence[str] = ()
    extra_controller_manager_flags: Sequence[str] = ()
    server: str = ""
    kubeconfig: str = ""
    token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    ca_file: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _apiserver_argv: list[str] = field(default_factory=list, init=False)
    _started_at: float = field(default=0.0, init=False)

    def log_path(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    # --- start ----------------------------------------------------------------------------

    def start(
        self, *, timeout: float = 60.0, before_controllers: Callable[[], None] | None = None
    ) -> None:
        """Start everything; `before_controllers` runs once the API server is ready.

        Install CRDs there: the garbage collector discovers resource types when it starts
        (and then only every 30 s), so owners of a CRD kind installed before it cascade at once.
        """
        self._started_at = time.monotonic()
        try:
            self._start(timeout)
            if before_controllers is not None:
                before_controllers()
            self.start_controller_manager()
        except BaseException:
            self.stop()
            raise

    def restart_controller_manager(self) -> None:
        """Restart the controllers, e.g. so the garbage collector sees newly added CRDs now."""
        process = self.processes.pop("kube-controller-manager", None)
        if process is not None:
            stop_process(process)
        self.start_controller_manager()

    def _start(self, timeout: float) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        pki = certs.generate(self.workdir / "pki")
        self.ca_file = str(pki.ca_cert)
        token_file = self.workdir / "tokens.csv"
        token_file.write_text(f'{self.token},admin,admin,"system:masters"\n')
        token_file.chmod(0o600)

        etcd_port, etcd_peer, api_port = free_port(), free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        self.processes["etcd"] = spawn(
            [
                str(self.binaries / "etcd"),
                "--name=videoflix-test",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
                f"--initial-cluster=videoflix-test=http://127.0.0.1:{etcd_peer}",
                # Throwaway data: durability buys nothing and fsync costs seconds on slow disks.
                "--unsafe-no-fsync",
                "--quota-backend-bytes=4294967296",
                "--log-level=warn",
            ],
            log_file=self.log_path("etcd"),
        )
        self.server = f"https://127.0.0.1:{api_port}"
        self._apiserver_argv = [
                str(self.binaries / "kube-apiserver"),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={api_port}",
                f"--tls-cert-file={pki.serving_cert}",
                f"--tls-private-key-file={pki.serving_key}",
                f"--client-ca-file={pki.ca_cert}",
                f"--token-auth-file={token_file}",
                "--authorization-mode=RBAC",
                "--service-cluster-ip-range=10.96.0.0/16",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki.sa_pub}",
                f"--service-account-signing-key-file={pki.sa_key}",
                "--allow-privileged=true",
                # No real Service endpoints to maintain for a loopback-only server.
                "--endpoint-reconciler-type=none",
                # Scale runs create thousands of Jobs quickly from a few clients.
                "--max-requests-inflight=2000",
                "--max-mutating-requests-inflight=1000",
                f"--cert-dir={self.workdir / 'apiserver-certs'}",
                "--profiling=false",
                # The local kubelet's node name does not resolve; its log endpoint is on 127.0.0.1.
                "--kubelet-preferred-address-types=InternalIP",
                "--v=1",
                *self.extra_apiserver_flags,
        ]
        self.processes["kube-apiserver"] = spawn(
            self._apiserver_argv, log_file=self.log_path("kube-apiserver")
        )
        self.kubeconfig = str(self.workdir / "kubeconfig")
        self._write_kubeconfig(Path(self.kubeconfig), pki.ca_cert)
        self._wait_ready(timeout)
        self.timings["apiserver_ready"] = self._since_start()

    def kill_apiserver(self) -> None:
        """SIGKILL the API server (a crash: no graceful drain); etcd and the controllers stay."""
        process = self.processes.pop("kube-apiserver", None)
        if process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def start_apiserver(self, timeout: float = 60.0) -> None:
        """Start the API server again on the same port with the same certificates and etcd."""
        assert self._apiserver_argv, "the control plane was never started"
        self.processes["kube-apiserver"] = spawn(
            self._apiserver_argv, log_file=self.log_path("kube-apiserver")
        )
        self._wait_ready(timeout)

    def start_controller_manager(self) -> None:
        pki = self.workdir / "pki"
        self.processes["kube-controller-manager"] = spawn(
            [
                str(self.binaries / "kube-controller-manager"),
                f"--kubeconfig={self.kubeconfig}",
                f"--authentication-kubeconfig={self.kubeconfig}",
                f"--authorization-kubeconfig={self.kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--leader-elect=false",
                f"--controllers={','.join(CONTROLLERS)}",
                "--use-service-account-credentials=false",
                f"--root-ca-file={pki / 'ca.crt'}",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                "--kube-api-qps=500",
                "--kube-api-burst=1000",
                "--concurrent-job-syncs=20",
                "--concurrent-gc-syncs=40",
                "--concurrent-ttl-after-finished-syncs=20",
                "--v=1",
                *self.extra_controller_manager_flags,
            ],
            log_file=self.log_path("kube-controller-manager"),
        )

    def _since_start(self) -> float:
        return time.monotonic() - self._started_at if self._started_at else 0.0

    def _write_kubeconfig(self, path: Path, ca: Path) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "videoflix-test",
                    "cluster": {
                        "server": self.server,
                        "certificate-authority-data": base64.b64encode(ca.read_bytes()).decode(),
                    },
                }
            ],
            "users": [{"name": "admin", "user": {"token": self.token}}],
            "contexts": [
                {
                    "name": "videoflix-test",
                    "context": {"cluster": "videoflix-test", "user": "admin"},
                }
            ],
            "current-context": "videoflix-test",
        }
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        path.chmod(0o600)

    def _check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with {process.returncode}; last log lines "
                    f"({self.log_path(name)}):\n{log_tail(self.log_path(name))}"
                )

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        with httpx.Client(
            base_url=self.server,
            verify=ssl.create_default_context(cafile=self.ca_file),
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=5.0,
        ) as http:
            while time.monotonic() < deadline:
                self._check_alive()
                try:
                    response = http.get("/readyz")
                    if response.status_code == 200:
                        return
                    last = response.text
                except httpx.TransportError as error:
                    last = repr(error)
                time.sleep(0.1)
        raise TimeoutError(f"kube-apiserver not ready after {timeout}s: {last[-2000:]}")

    def client(self) -> KubeClient:
        return KubeClient(self.server, self.token, self.ca_file)

    # --- stop -----------------------------------------------------------------------------

    def stop(self) -> None:
        # Reverse start order: controllers first, so nothing writes to a closing API server.
        for name in reversed(list(self.processes)):
            stop_process(self.processes[name])
        self.processes.clear()
