"""Integration setup for the operator: a real `kopf run` process against the test control plane,
Job pods run by the local kubelet through the real transcoder, MinIO and PostgreSQL."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import Engine, create_engine, select
from sqlalchemy.orm import Session
from videoflix_core import storage
from videoflix_core.db.migrate import upgrade
from videoflix_core.db.models import Video
from videoflix_core.transcode import videotranscode_manifest
from videoflix_operator.rbac import RULES

from tests.cluster.fixtures import Kube
from tests.cluster.podenv import ImageMapping
from tests.fixtures.minio import MinioServer
from tests.fixtures.procs import free_port, stop

HERE = Path(__file__).resolve().parent
Obj = dict[str, Any]
FLAKY_IMAGE = "videoflix-flaky:test"


def _ffmpeg(out: Path, *args: str) -> Path:
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", *args, str(out)], check=True)
    return out


@pytest.fixture(scope="session")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny generated sources (2 s; low frame rate keeps the shared CPU free)."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed (apt-get install ffmpeg)")
    d = tmp_path_factory.mktemp("sources")

    def video(name: str, size: str, seconds: int = 2) -> Path:
        return _ffmpeg(
            d / name,
            "-f",
            "lavfi",
            "-i",
            f"testsrc2=size={size}:rate=10:duration={seconds}",
            "-f",
            "lavfi",
            "-i",
            f"sine=frequency=440:duration={seconds}",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-shortest",
        )

    broken = d / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(4096))
    return {
        "1080p": video("src-1080.mp4", "1920x1080"),
        "480p": video("src-480.mp4", "854x480"),
        "tiny": video("src-tiny.mp4", "320x180", seconds=1),
        "broken": broken,
    }


@dataclass
class OperatorProcess:
    """`kopf run` of the real operator, restartable (and killable) by tests."""

    env: dict[str, str]
    namespace: str
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    liveness_port: int = field(default_factory=free_port)
    all_namespaces: bool = False  # the chart's `operator.watchScope: cluster`
    # An API server that is starting serves requests before its RBAC caches are synced: a test
    # that restarts it sees 403s that say nothing about the RBAC table.
    forbidden_ok: bool = False

    def start(self) -> None:
        kopf = str(Path(sys.executable).with_name("kopf"))
        log = self.log_path.open("ab")
        scope = ["--all-namespaces"] if self.all_namespaces else ["--namespace", self.namespace]
        self.proc = subprocess.Popen(
            [
                kopf,
                "run",
                "-m",
                "videoflix_operator.main",
                *scope,
                "--standalone",
                "--liveness",
                f"http://127.0.0.1:{self.liveness_port}/healthz",
            ],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, like a crashed node."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@dataclass
class Platform:
    kube: Kube
    namespace: str
    bucket: str
    minio: MinioServer
    engine: Engine
    operator: OperatorProcess

    def path(self, kind: str, name: str = "") -> str:
        base = {
            "vt": f"/apis/videoflix.io/v1alpha1/namespaces/{self.namespace}/videotranscodes",
            "jobs": f"/apis/batch/v1/namespaces/{self.namespace}/jobs",
            "pods": f"/api/v1/namespaces/{self.namespace}/pods",
            "events": f"/api/v1/namespaces/{self.namespace}/events",
        }[kind]
        return f"{base}/{name}" if name else base

    def add_video(self, source: Path, generation: int = 0) -> tuple[int, str]:
        with Session(self.engine) as s:
            video = Video(title=source.name, transcode_generation=generation)
            s.add(video)
            s.commit()
            vid = video.id
        key = storage.source_key(vid, source.name)
        self.minio.client().upload_file(str(source), self.bucket, key)
        with Session(self.engine) as s:
            s.get_one(Video, vid).source_key = key
            s.commit()
        return vid, key

    def create(self, video_id: int, key: str, generation: int = 0, **extra: Any) -> str:
        manifest = videotranscode_manifest(
            video_id, self.bucket, key, generation, self.namespace, **extra
        )
        self.kube.client.create(self.path("vt"), manifest)
        return str(manifest["metadata"]["name"])

    def transcode(self, source: Path, **extra: Any) -> tuple[int, str]:
        vid, key = self.add_video(source)
        return vid, self.create(vid, key, **extra)

    def cr(self, name: str) -> Obj | None:
        return self.kube.client.get_or_none(self.path("vt", name))

    def wait(self, name: str, check: Callable[[Obj], bool], what: str, timeout: float = 180) -> Obj:
        deadline = time.monotonic() + timeout
        last: Obj | None = None
        while time.monotonic() < deadline:
            last = self.cr(name)
            if last is not None and check(last):
                return last
            if self.operator.proc is not None and self.operator.proc.poll() is not None:
                raise AssertionError(f"the operator died:\n{self.operator.log()[-4000:]}")
            time.sleep(0.3)
        raise AssertionError(
            f"timed out waiting for {what}; last status: "
            f"{(last or {}).get('status')}\n{self.operator.log()[-3000:]}"
        )

    def wait_phase(self, name: str, phase: str, timeout: float = 180) -> Obj:
        def done(cr: Obj) -> bool:
            current = (cr.get("status") or {}).get("phase")
            if current in ("Succeeded", "Failed") and current != phase:
                raise AssertionError(f"{name} ended {current}, not {phase}: {cr.get('status')}")
            return current == phase

        return self.wait(name, done, f"{name} to be {phase}", timeout)

    def jobs(self, cr_name: str | None = None) -> list[Obj]:
        selector = "app.kubernetes.io/managed-by=videoflix-operator"
        if cr_name:
            selector += f",videoflix.io/transcode={cr_name}"
        return list(self.kube.client.get(self.path("jobs"), labelSelector=selector)["items"])

    def pods(self, cr_name: str) -> list[Obj]:
        return list(
            self.kube.client.get(
                self.path("pods"), labelSelector=f"videoflix.io/transcode={cr_name}"
            )["items"]
        )

    def video(self, video_id: int) -> Video:
        with Session(self.engine, expire_on_commit=False) as s:
            return s.scalars(select(Video).where(Video.id == video_id)).one()

    def keys(self, video_id: int) -> list[str]:
        return self.minio.keys(self.bucket, storage.video_prefix(video_id))

    def events(self, name: str) -> list[Obj]:
        items = self.kube.client.get(self.path("events"))["items"]
        return [e for e in items if e.get("involvedObject", {}).get("name") == name]


def operator_env(
    cluster: Kube, namespace: str, minio: MinioServer, database_url: str, **settings: str
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIDEOFLIX_")}
    env.update(cluster.env())
    env.update(minio.env())
    env.update(
        {
            "VIDEOFLIX_NAMESPACE": namespace,
            "VIDEOFLIX_DATABASE_URL": database_url,
            "VIDEOFLIX_TRANSCODER_IMAGE": "registry.local/videoflix-transcoder:test",
            "VIDEOFLIX_METRICS_PORT": str(free_port()),
            "VIDEOFLIX_RESYNC_SECONDS": "5",
            "VIDEOFLIX_SCHEDULER_INTERVAL_SECONDS": "2",
            "VIDEOFLIX_MAX_RUNNING_JOBS": "4",
            "VIDEOFLIX_BACKOFF_LIMIT": "2",
            "VIDEOFLIX_JOB_TTL_SECONDS": "600",
        }
    )
    env.update(settings)
    return env


def cluster_role_name(namespace: str) -> str:
    """ClusterRoles are not removed with the test's namespace: one name per test to delete."""
    return f"videoflix-operator-{namespace}"


def operator_kubeconfig(
    cluster: Kube, namespace: str, directory: Path, cluster_wide: bool = False
) -> str:
    """A kubeconfig for a ServiceAccount bound to exactly `videoflix_operator.rbac.RULES`, so every
    integration test also proves the operator needs no more rights than that table.

    `cluster_wide`: the same rules as a ClusterRole with a ClusterRoleBinding, as the chart
    renders them for `operator.watchScope: cluster` (no Role in the namespace at all)."""
    base = f"/api/v1/namespaces/{namespace}"
    cluster.client.create(
        f"{base}/serviceaccounts",
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "videoflix-operator"}},
    )
    if cluster_wide:
        rbac = "/apis/rbac.authorization.k8s.io/v1"
        role_kind, role_name = "ClusterRole", cluster_role_name(namespace)
    else:
        rbac = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}"
        role_kind, role_name = "Role", "videoflix-operator"
    cluster.client.create(
        f"{rbac}/{role_kind.lower()}s",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": role_kind,
            "metadata": {"name": role_name},
            "rules": RULES,
        },
    )
    cluster.client.create(
        f"{rbac}/{role_kind.lower()}bindings",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": f"{role_kind}Binding",
            "metadata": {"name": role_name},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": role_kind,
                "name": role_name,
            },
            "subjects": [
                {"kind": "ServiceAccount", "name": "videoflix-operator", "namespace": namespace}
            ],
        },
    )
    token = cluster.client.create(
        f"{base}/serviceaccounts/videoflix-operator/token",
        {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": 3600},
        },
    )["status"]["token"]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "operator",
        "clusters": [
            {
                "name": "test",
                "cluster": {"server": cluster.server, "certificate-authority": cluster.ca_file},
            }
        ],
        "users": [{"name": "operator", "user": {"token": token}}],
        "contexts": [
            {
                "name": "operator",
                "context": {"cluster": "test", "user": "operator", "namespace": namespace},
            }
        ],
    }
    path = directory / "operator.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return str(path)


@pytest.fixture
def make_platform(
    kube: Kube,
    kube_namespace: str,
    minio_server: MinioServer,
    s3_bucket: str,
    database_url: str,
    tmp_path: Path,
) -> Iterator[Callable[..., Platform]]:
    """Call with operator settings (env names without prefix) to start the operator."""
    engine = create_engine(database_url)
    ns = kube_namespace
    kube.client.create(
        f"/api/v1/namespaces/{ns}/serviceaccounts",
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "videoflix-transcoder"},
            "automountServiceAccountToken": False,
        },
    )
    # Not under /tmp: the local kubelet maps /tmp paths into the pod's own tmp volume.
    flaky_dir = Path(tempfile.mkdtemp(prefix="videoflix-flaky-", dir="/var/tmp"))
    kube.client.create(
        f"/api/v1/namespaces/{ns}/secrets",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "videoflix-s3"},
            "stringData": {**minio_server.env(), "VIDEOFLIX_FLAKY_DIR": str(flaky_dir)},
        },
    )
    started: list[OperatorProcess] = []
    cluster_wide: list[bool] = []

    def make(all_namespaces: bool = False, **settings: str) -> Platform:
        """`all_namespaces`: run `kopf run --all-namespaces` under a ClusterRole instead."""
        if not cluster_wide:
            cluster_wide.append(all_namespaces)
            operator_kubeconfig(kube, ns, tmp_path, cluster_wide=all_namespaces)
        assert cluster_wide == [all_namespaces], "one RBAC mode per test"
        kubeconfig = str(tmp_path / "operator.kubeconfig")
        upgrade(database_url)
        env = operator_env(
            kube,
            ns,
            minio_server,
            database_url,
            **{f"VIDEOFLIX_{k.upper()}": v for k, v in settings.items()},
        )
        env["KUBECONFIG"] = kubeconfig  # the operator's own ServiceAccount, not admin
        op = OperatorProcess(
            env=env,
            namespace=ns,
            log_path=tmp_path / "operator.log",
            all_namespaces=all_namespaces,
        )
        op.start()
        started.append(op)
        return Platform(kube, ns, s3_bucket, minio_server, engine, op)

    yield make
    for op in started:
        op.stop()
    if cluster_wide == [True]:
        rbac = "/apis/rbac.authorization.k8s.io/v1"
        kube.client.delete(f"{rbac}/clusterrolebindings/{cluster_role_name(ns)}")
        kube.client.delete(f"{rbac}/clusterroles/{cluster_role_name(ns)}")
    if os.environ.get("VIDEOFLIX_SHOW_OPERATOR_LOG"):
        sys.stderr.write((tmp_path / "operator.log").read_text(errors="replace"))
    engine.dispose()
    shutil.rmtree(flaky_dir, ignore_errors=True)
    log = (tmp_path / "operator.log").read_text(errors="replace") if started else ""
    # Every API call of the run was allowed by the RBAC table (kopf logs refusals, e.g. Events).
    if not any(op.forbidden_ok for op in started):
        assert " 403" not in log and "Forbidden" not in log, log[-3000:]


@pytest.fixture(scope="session")
def flaky_image(kube: Kube) -> str:
    if not any(m.match == "videoflix-flaky" for m in kube.kubelet.images):
        kube.kubelet.add_image(
            ImageMapping(
                match="videoflix-flaky",
                entrypoint=(sys.executable, str(HERE / "flaky_transcoder.py")),
            )
        )
    return FLAKY_IMAGE
