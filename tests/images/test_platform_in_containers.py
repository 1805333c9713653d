"""The platform in real containers: API and operator from their images, every transcode Job's
pod run by the local kubelet's container mode from the transcoder image.

upload (HTTP, to the API container) → row + VideoTranscode → the operator container's Jobs →
the real Job controller → pods as podman containers (uid 10001, read-only root, no capabilities,
scratch emptyDir, termination log) → the video is `ready` with its renditions in MinIO.
"""

from __future__ import annotations

import json
import subprocess
import time
from http.cookies import SimpleCookie
from pathlib import Path

import httpx
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session
from videoflix_api.services.accounts import create_user
from videoflix_core.db import Video
from videoflix_core.db.migrate import upgrade

from tests.cluster.fixtures import Kube
from tests.fixtures.minio import MinioServer
from tests.fixtures.procs import free_port, wait_until
from tests.images.conftest import (
    HARDENED,
    ContainerOperator,
    Images,
    env_args,
    operator_mounts,
    wait_until_or_log,
    writable_dir,
)
from tests.operator.conftest import operator_env, operator_kubeconfig

FRONTEND = "https://app.videoflix.test"
PASSWORD = "correct horse battery"


def test_upload_to_ready_with_every_part_in_its_image(
    images: Images,
    kube: Kube,
    kube_namespace: str,
    minio_server: MinioServer,
    s3_bucket: str,
    database_url: str,
    tmp_path: Path,
) -> None:
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
    kube.client.create(
        f"/api/v1/namespaces/{ns}/secrets",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "videoflix-s3"},
            "stringData": minio_server.env(),
        },
    )
    upgrade(database_url)
    engine = create_engine(database_url)
    with Session(engine) as session:
        create_user(session, "staff@example.com", PASSWORD, staff=True)
        session.commit()
    source = tmp_path / "clip.mp4"
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
         "testsrc2=size=320x180:rate=10:duration=2", "-f", "lavfi", "-i",
         "sine=frequency=440:duration=2", "-c:v", "libx264", "-preset", "ultrafast",
         "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(source)],
        check=True,
    )

    kubeconfig = operator_kubeconfig(kube, ns, writable_dir(tmp_path / "kube"))
    env = operator_env(
        kube,
        ns,
        minio_server,
        database_url,
        VIDEOFLIX_TRANSCODER_IMAGE=images.refs["transcoder"],
    )
    env["KUBECONFIG"] = kubeconfig
    operator = ContainerOperator(
        env=env,
        namespace=ns,
        log_path=tmp_path / "operator.log",
        images=images,
        mounts=operator_mounts(kubeconfig, kube.ca_file, tmp_path / "readable"),
    )
    port = free_port()
    api_name = f"videoflix-api-{port}"
    admin_config = tmp_path / "admin.kubeconfig"
    admin_config.write_bytes(Path(kube.kubeconfig).read_bytes())
    admin_config.chmod(0o644)
    api_env = {
        **minio_server.env(s3_bucket),
        "VIDEOFLIX_DATABASE_URL": database_url,
        "VIDEOFLIX_SECRET_KEY": "container-e2e-" + "k" * 40,
        "VIDEOFLIX_PUBLIC_BASE_URL": "https://api.videoflix.test",
        "VIDEOFLIX_KUBECONFIG": str(admin_config),
        "VIDEOFLIX_NAMESPACE": ns,
        "VIDEOFLIX_FRONTEND_URL": FRONTEND,
    }
    command = [str(c) for c in images.config("api")["Cmd"]]
    command[command.index("--port") + 1] = str(port)
    command[command.index("--host") + 1] = "127.0.0.1"
    api_log = (tmp_path / "api.log").open("wb")
    started = time.monotonic()
    with kube.kubelet.container_mode(images.container_mode()):
        operator.start()
        api = subprocess.Popen(
            images.podman.argv(
                "run", "--rm", f"--name={api_name}", *HARDENED, "--tmpfs=/tmp:rw,size=64m",
                f"--volume={admin_config}:{admin_config}:ro",
                f"--volume={kube.ca_file}:{kube.ca_file}:ro",
                *env_args(api_env), images.refs["api"], *command,
            ),
            env=images.podman.env(), stdout=api_log, stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_or_log(
                lambda: httpx.get(url + "/ready", timeout=2).status_code == 200,
                "the API container",
                tmp_path / "api.log",
            )
            login = httpx.post(
                url + "/users/login/",
                json={"email": "staff@example.com", "password": PASSWORD},
                headers={"Origin": FRONTEND},
                timeout=30,  # password hashing on a shared, loaded machine
            )
            assert login.status_code == 200, login.text
            jar: SimpleCookie = SimpleCookie()
            for header in login.headers.get_list("set-cookie"):
                jar.load(header)
            uploaded = httpx.post(
                url + "/videos/upload/",
                data={"title": "In containers", "description": "", "category": ""},
                files={"file": ("clip.mp4", source.read_bytes(), "video/mp4")},
                cookies={name: morsel.value for name, morsel in jar.items()},
                headers={"Origin": FRONTEND},
                timeout=60,
            )
            assert uploaded.status_code in (200, 201, 202), uploaded.text
            video_id = int(uploaded.json()["id"])

            def state() -> str:
                assert operator.proc is not None and operator.proc.poll() is None, operator.log()
                with Session(engine) as session:
                    row = session.scalars(select(Video).where(Video.id == video_id)).one()
                    assert row.processing_state != "error", (row.processing_error, operator.log())
                    return str(row.processing_state)

            wait_until(lambda: state() == "ready", "the video to be ready", timeout=170)
            elapsed = time.monotonic() - started
        finally:
            images.podman.run("stop", "--time=5", api_name, check=False)
            api.wait(30)
            api_log.close()
            operator.stop()

    with Session(engine) as session:
        row = session.scalars(select(Video).where(Video.id == video_id)).one()
        assert row.converted_files is not None and "120p" in row.converted_files
    # The operator from its image reconciled the API's VideoTranscode to the end.
    [transcode] = kube.client.get(
        f"/apis/videoflix.io/v1alpha1/namespaces/{ns}/videotranscodes"
    )["items"]
    assert transcode["status"]["phase"] == "Succeeded", transcode["status"]
    assert transcode["spec"]["videoId"] == video_id
    engine.dispose()
    keys = set(minio_server.keys(s3_bucket, f"videos/{video_id}/"))
    assert f"videos/{video_id}/120p/video.mp4" in keys
    # Every Job pod ran as a container of the transcoder image (not a local process), as the
    # non-root user of the operator's pod spec, and left its result in the termination log.
    pods = kube.client.get(f"/api/v1/namespaces/{ns}/pods")["items"]
    assert pods, "no Job pod"
    for pod in pods:
        [status] = pod["status"]["containerStatuses"]
        assert status["image"] == images.refs["transcoder"]
        terminated = status["state"]["terminated"]
        assert terminated["exitCode"] == 0, terminated
        result = json.loads(terminated["message"])
        assert result and "error" not in result, terminated
        assert status["containerID"].startswith("podman://k8s_"), status
    print(f"container-mode e2e: upload → ready in {elapsed:.1f} s")
