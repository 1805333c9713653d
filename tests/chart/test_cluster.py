"""The rendered chart against the real API server of the test control plane (`kube` fixture).

- every rendered object goes through server-side apply with dryRun=All (CRDs first), in a namespace
  that enforces the `restricted` Pod Security Standard, so an invalid field or an unsafe pod fails;
- the operator Deployment's rendered command and env start the real operator, which then builds
  its Jobs from exactly the settings the chart gave it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.chart.helm import CHART, CI_VALUES, REPO, Obj, find, pod_spec, render, resolve_env

# ServiceMonitor/PrometheusRule schemas come from the Prometheus Operator's own CRDs, fetched as
# its Go module (the same pinned-module route as Helm), verified against this go.sum hash.
PROMETHEUS_OPERATOR = "github.com/prometheus-operator/prometheus-operator@v0.86.1"
PROMETHEUS_OPERATOR_SUM = "h1:pHUuiRErcFb3nFDox7RxoxpEN0FyT24GtYOkr2GBu04="
APPLY = "application/apply-patch+yaml"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def monitoring_crds() -> list[Path]:
    module = PROMETHEUS_OPERATOR.split("@")[0]
    result = subprocess.run(
        ["go", "mod", "download", "-json", PROMETHEUS_OPERATOR],
        capture_output=True,
        text=True,
        cwd="/tmp",
        env={**os.environ, "GONOSUMDB": module, "GOFLAGS": "-mod=mod"},
        timeout=300,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot fetch {PROMETHEUS_OPERATOR} CRDs: {result.stdout[-300:]}")
    info = json.loads(result.stdout)
    assert info["Sum"] == PROMETHEUS_OPERATOR_SUM, "prometheus-operator module hash changed"
    crds = Path(info["Dir"]) / "example" / "prometheus-operator-crd"
    return [
        crds / "monitoring.coreos.com_servicemonitors.yaml",
        crds / "monitoring.coreos.com_prometheusrules.yaml",
    ]


class Api:
    """Just enough of a client for dry-run applies: resource paths from discovery, and warnings."""

    def __init__(self, kube: Any) -> None:
        import ssl

        self.http = httpx.Client(
            base_url=kube.server,
            verify=ssl.create_default_context(cafile=kube.ca_file),
            headers={"Authorization": f"Bearer {kube.token}"},
            timeout=30,
        )
        self._resources: dict[str, tuple[str, bool]] = {}

    def close(self) -> None:
        self.http.close()

    def _resource(self, api_version: str, kind: str) -> tuple[str, bool]:
        key = f"{api_version}/{kind}"
        if key not in self._resources:
            base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
            listing = self.http.get(base)
            listing.raise_for_status()
            for res in listing.json()["resources"]:
                if "/" not in res["name"]:
                    self._resources[f"{api_version}/{res['kind']}"] = (
                        f"{base}/{{ns}}{res['name']}",
                        res["namespaced"],
                    )
        return self._resources[key]

    def path(self, obj: Obj, namespace: str) -> str:
        template, namespaced = self._resource(obj["apiVersion"], obj["kind"])
        ns = f"namespaces/{obj['metadata'].get('namespace', namespace)}/" if namespaced else ""
        return f"{template.format(ns=ns)}/{obj['metadata']['name']}"

    def apply(self, obj: Obj, namespace: str, *, dry_run: bool) -> httpx.Response:
        params = {"fieldManager": "videoflix-chart-tests", "force": "true"}
        if dry_run:
            params["dryRun"] = "All"
        return self.http.patch(
            self.path(obj, namespace),
            content=json.dumps(obj),
            headers={"Content-Type": APPLY},
            params=params,
        )


@pytest.fixture
def api(kube: Any) -> Iterator[Api]:
    client = Api(kube)
    yield client
    client.close()


def restricted_namespace(kube: Any, api: Api, name: str) -> str:
    kube.create_namespace(name)
    response = api.http.patch(
        f"/api/v1/namespaces/{name}",
        content=json.dumps(
            {
                "metadata": {
                    "labels": {
                        "pod-security.kubernetes.io/enforce": "restricted",
                        "pod-security.kubernetes.io/warn": "restricted",
                    }
                }
            }
        ),
        headers={"Content-Type": "application/merge-patch+json"},
    )
    response.raise_for_status()
    return name


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.stem)
def test_every_rendered_object_passes_server_side_dry_run(
    values: Path, kube: Any, api: Api, monitoring_crds: list[Path], request: pytest.FixtureRequest
) -> None:
    for path in monitoring_crds:
        kube.apply_crds([path])
    namespace = restricted_namespace(kube, api, f"chart-{values.stem[:20]}-{os.getpid() % 10000}")
    jobs_namespace = restricted_namespace(kube, api, f"{namespace}-jobs")
    try:
        objects = render(
            [values], {"config.transcodeNamespace": jobs_namespace}, namespace=namespace
        )
        # CRDs first, as Helm installs them.
        objects.sort(key=lambda o: o["kind"] != "CustomResourceDefinition")
        problems = []
        for obj in objects:
            response = api.apply(obj, namespace, dry_run=True)
            where = f"{obj['kind']}/{obj['metadata']['name']}"
            if response.status_code >= 400:
                problems.append(f"{where}: {response.status_code} {response.json().get('message')}")
            for warning in response.headers.get_list("warning"):
                problems.append(f"{where}: warning {warning}")
        assert problems == [], "\n".join(problems)
        assert len(objects) > 15
    finally:
        kube.delete_namespace(namespace)
        kube.delete_namespace(jobs_namespace)


def test_dry_run_refuses_an_invalid_field(kube: Any, api: Api, kube_namespace: str) -> None:
    """The check above can fail: the API server refuses what the schema does not allow."""
    objects = render([CHART / "ci" / "default-values.yaml"], namespace=kube_namespace)
    deployment = find(objects, "Deployment", "-api")
    pod_spec(deployment)["containers"][0]["readinessProbe"]["periodSecond"] = 3
    response = api.apply(deployment, kube_namespace, dry_run=True)
    # Server-side apply answers 500 "field not declared in schema" for unknown fields.
    assert response.status_code >= 400, response.text
    assert "periodSecond" in response.text and "not declared" in response.text, response.text
    crd = find(objects, "CustomResourceDefinition")
    crd["spec"]["scope"] = "Galactic"
    assert api.apply(crd, kube_namespace, dry_run=True).status_code == 422


def wait_http(url: str, process: subprocess.Popen[Any], timeout: float = 60) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise AssertionError(f"operator exited with {process.returncode}")
        try:
            response = httpx.get(url, timeout=2)
            if response.status_code == 200:
                return response
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer 200 within {timeout}s")
        time.sleep(0.2)


def wait_url(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            response = httpx.get(url, timeout=5)
            if response.status_code == 200:
                return
            last = f"{response.status_code} {response.text[:300]}"
        except httpx.HTTPError as error:
            last = repr(error)
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} not 200 within {timeout}s: {last}")
        time.sleep(0.3)


def test_rendered_operator_deployment_starts_the_operator(
    kube: Any,
    api: Api,
    kube_namespace: str,
    database_url: str,
    minio_server: Any,
    s3_bucket: str,
    tmp_path: Path,
) -> None:
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session
    from videoflix_core.db import Video
    from videoflix_core.db.migrate import upgrade

    upgrade(database_url)
    # The sample CR's row: a CR whose row is gone is an orphan the operator deletes.
    engine = create_engine(database_url)
    with Session(engine) as session:
        session.add(Video(id=1, title="Sample", source_key="videos/1/source/sample.mp4"))
        session.commit()
    engine.dispose()
    health, metrics = free_port(), free_port()
    objects = render(
        [CHART / "ci" / "default-values.yaml"],
        {
            "config.database.url": database_url,
            "config.s3.endpointUrl": minio_server.endpoint_url,
            "config.s3.bucket": s3_bucket,
            "config.s3.accessKeyId": minio_server.access_key,
            "config.s3.secretAccessKey": minio_server.secret_key,
            "operator.healthPort": health,
            "operator.metricsPort": metrics,
            "transcoder.maxRunningJobs": 1,
            "transcoder.deadlines.probeSeconds": 123,
        },
        namespace=kube_namespace,
    )
    # What the Jobs need in the namespace: their ServiceAccount and the S3 Secret.
    for obj in objects:
        if obj["kind"] in ("ServiceAccount", "Secret") and "helm.sh/hook" not in (
            obj["metadata"].get("annotations") or {}
        ):
            response = api.apply(obj, kube_namespace, dry_run=False)
            assert response.status_code < 300, response.text
    deployment = find(objects, "Deployment", "-operator")
    [container] = pod_spec(deployment)["containers"]
    env = resolve_env(container, objects, namespace=kube_namespace)
    bin_dir = Path(sys.executable).parent
    log_path = tmp_path / "operator.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            container["command"],
            env={
                "PATH": f"{bin_dir}:/usr/bin:/bin",
                "HOME": str(tmp_path),
                **env,
                **kube.env(),
            },
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
    try:
        wait_http(f"http://127.0.0.1:{health}/healthz", process)
        assert (
            "videoflix_queue_depth"
            in wait_http(f"http://127.0.0.1:{metrics}/metrics", process).text
        )
        sample = yaml.safe_load((REPO / "crds" / "samples" / "video-1.yaml").read_text())
        sample["spec"]["source"]["bucket"] = s3_bucket
        kube.client.create(
            f"/apis/videoflix.io/v1alpha1/namespaces/{kube_namespace}/videotranscodes", sample
        )

        def probe_job(listing: Obj | None) -> bool:
            return any(
                j["metadata"]["labels"].get("videoflix.io/step") == "probe"
                for j in (listing or {}).get("items", [])
            )

        listing = kube.client.wait_for(
            f"/apis/batch/v1/namespaces/{kube_namespace}/jobs",
            probe_job,
            timeout=60,
            what="the operator to create the probe Job",
        )
        assert listing is not None
        [job] = [
            j for j in listing["items"] if j["metadata"]["labels"]["videoflix.io/step"] == "probe"
        ]
        spec = job["spec"]["template"]["spec"]
        [job_container] = spec["containers"]
        values = {e["name"]: e.get("value") for e in container["env"]}
        # Every Job setting is the chart's.
        assert job_container["image"] == values["VIDEOFLIX_TRANSCODER_IMAGE"]
        assert (
            spec["serviceAccountName"]
            == find(objects, "ServiceAccount", "-transcoder")["metadata"]["name"]
        )
        assert job_container["envFrom"] == [
            {"secretRef": {"name": values["VIDEOFLIX_S3_SECRET_NAME"]}}
        ]
        assert job["spec"]["activeDeadlineSeconds"] == 123
        assert job["spec"]["ttlSecondsAfterFinished"] == 3600
        assert job_container["resources"] == {
            "requests": {"cpu": "250m", "memory": "256Mi"},
            "limits": {"cpu": "1", "memory": "512Mi"},
        }
        # SIGTERM, as the kubelet sends it: kopf stops cleanly within the grace period.
        process.send_signal(signal.SIGTERM)
        grace = pod_spec(deployment)["terminationGracePeriodSeconds"]
        assert process.wait(timeout=grace) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        sys.stderr.write(log_path.read_text()[-3000:])


@dataclass
class Release:
    namespace: str
    helm_args: list[str]  # --kubeconfig … --namespace …
    api_url: str
    health_url: str
    install_output: str
    api_env: dict[str, str]


@contextlib.contextmanager
def installed_release(
    kube: Any, api: Api, database_url: str, minio_server: Any, s3_bucket: str, smtp_server: Any
) -> Iterator[Release]:
    """`helm install --wait` of the chart into a fresh `restricted` namespace; the local kubelet
    runs its pods (API, operator, migration hook, transcoder Jobs) as local processes."""
    from tests.chart.helm import helm
    from tests.cluster.podenv import ImageMapping

    namespace = restricted_namespace(kube, api, f"chart-install-{secrets.token_hex(3)}")
    mappings = [
        ImageMapping("videoflix-chart-api", (sys.executable, "-m", "uvicorn"), ("uvicorn",)),
        ImageMapping("videoflix-chart-operator", (sys.executable, "-m", "kopf"), ("kopf",)),
    ]
    kube.kubelet.images[:0] = mappings
    api_port, health, metrics = free_port(), free_port(), free_port()
    # Pods mount an emptyDir at /tmp, and the kubelet maps such paths into the pod's own dir:
    # the kubeconfig handed to the pods must live elsewhere.
    kubeconfig_dir = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="videoflix-chart-"))
    pod_kubeconfig = str(shutil.copy(kube.kubeconfig, kubeconfig_dir / "kubeconfig"))
    values = {
        "crds.enabled": False,  # the cluster has it already, as a platform team's would
        "config.frontendUrl": "http://127.0.0.1:4200",
        "config.publicBaseUrl": f"http://127.0.0.1:{api_port}",
        "config.database.url": database_url,
        "config.s3.endpointUrl": minio_server.endpoint_url,
        "config.s3.bucket": s3_bucket,
        "config.s3.accessKeyId": minio_server.access_key,
        "config.s3.secretAccessKey": minio_server.secret_key,
        "config.smtp.host": smtp_server.host,
        "config.smtp.port": smtp_server.port,
        "config.smtp.startTls": False,
        "config.cookies.secure": False,  # plain HTTP on loopback
        "api.image.repository": "videoflix-chart-api",
        "api.replicaCount": 1,
        "api.containerPort": api_port,
        "api.extraEnv": [{"name": "VIDEOFLIX_KUBECONFIG", "value": pod_kubeconfig}],
        "operator.image.repository": "videoflix-chart-operator",
        "operator.healthPort": health,
        "operator.metricsPort": metrics,
        # Outside a pod there is no service-account token: kopf logs in with the kubeconfig.
        "operator.extraEnv": [{"name": "KUBECONFIG", "value": pod_kubeconfig}],
        # The local kubelet maps images named videoflix-transcoder to the transcoder package.
        "transcoder.image.repository": "videoflix-transcoder",
        "tests.readyUrl": f"http://127.0.0.1:{api_port}/ready",
    }
    args = ["--values", str(CHART / "ci" / "default-values.yaml")]
    for key, value in values.items():
        args += ["--set-json", f"{key}={json.dumps(value)}"]
    helm_args = ["--kubeconfig", kube.kubeconfig, "--namespace", namespace]
    try:
        objects = render([CHART / "ci" / "default-values.yaml"], values, namespace=namespace)
        [api_container] = pod_spec(find(objects, "Deployment", "-api"))["containers"]
        output = helm(
            "install", "rel", str(CHART), *helm_args, *args, "--wait", "--timeout", "180s"
        )
        yield Release(
            namespace=namespace,
            helm_args=helm_args,
            api_url=f"http://127.0.0.1:{api_port}",
            health_url=f"http://127.0.0.1:{health}/healthz",
            install_output=output,
            api_env=resolve_env(api_container, objects, namespace=namespace),
        )
    finally:
        with contextlib.suppress(Exception):
            helm("uninstall", "rel", *helm_args, "--wait", "--timeout", "60s")
        for mapping in mappings:
            kube.kubelet.images.remove(mapping)
        kube.delete_namespace(namespace)
        shutil.rmtree(kubeconfig_dir, ignore_errors=True)


def test_helm_install_runs_the_release_and_uninstall_leaves_nothing(
    kube: Any,
    api: Api,
    database_url: str,
    minio_server: Any,
    s3_bucket: str,
    smtp_server: Any,
) -> None:
    """A real `helm install --wait`: hooks in order, pods admitted under `restricted`, the API
    ready against real PostgreSQL/MinIO/SMTP, the operator live, `helm test` green; then
    `helm uninstall` leaves nothing of the release."""
    from sqlalchemy import create_engine, inspect

    from tests.chart.helm import helm

    with installed_release(
        kube, api, database_url, minio_server, s3_bucket, smtp_server
    ) as release:
        namespace = release.namespace
        # NOTES.txt
        assert (
            f"-n {namespace} port-forward svc/rel-videoflix-api 8000:80" in release.install_output
        )
        engine = create_engine(database_url)
        try:
            assert "videos" in inspect(engine).get_table_names()  # the pre-install hook ran
        finally:
            engine.dispose()
        secrets_left = kube.client.get(f"/api/v1/namespaces/{namespace}/secrets")["items"]
        # The hook's own copy of the database URL is gone once the migration succeeded.
        assert not [s for s in secrets_left if s["metadata"]["name"].endswith("-migrations")]
        # Pods count as ready once their process runs (the local kubelet runs no probes), so
        # poll what the readiness and liveness probes would.
        wait_url(f"{release.api_url}/ready")
        wait_url(release.health_url)
        # The chart's own `helm test` hook: its pod calls /ready and must succeed.
        tested = helm("test", "rel", *release.helm_args, "--timeout", "60s")
        assert "Phase:          Succeeded" in tested, tested

        helm("uninstall", "rel", *release.helm_args, "--wait", "--timeout", "120s")
        selector = "app.kubernetes.io/instance=rel"
        for path in (
            f"/api/v1/namespaces/{namespace}/pods",
            f"/api/v1/namespaces/{namespace}/secrets",
            f"/api/v1/namespaces/{namespace}/serviceaccounts",
            f"/api/v1/namespaces/{namespace}/services",
            f"/apis/apps/v1/namespaces/{namespace}/deployments",
            f"/apis/batch/v1/namespaces/{namespace}/jobs",
            f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/roles",
            f"/apis/networking.k8s.io/v1/namespaces/{namespace}/networkpolicies",
        ):
            kube.client.wait_for(
                f"{path}?labelSelector={selector}",
                lambda listing: not (listing or {}).get("items"),
                timeout=60,
                what=f"nothing left under {path}",
            )
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{release.api_url}/ready", timeout=2)


def test_installed_release_transcodes_an_upload(
    kube: Any,
    api: Api,
    database_url: str,
    minio_server: Any,
    s3_bucket: str,
    smtp_server: Any,
    tmp_path: Path,
) -> None:
    """The e2e flow of tests/e2e on the local control plane: register and confirm through the
    captured mail, upload as staff, the operator's Jobs transcode, play, delete."""
    video = tmp_path / "clip.mp4"
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x180:rate=25:duration=2",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:duration=2",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-shortest",
            str(video),
        ],
        check=True,
    )
    with installed_release(
        kube, api, database_url, minio_server, s3_bucket, smtp_server
    ) as release:
        wait_url(f"{release.api_url}/ready")
        # The first staff account, as an admin would make it: the API's CLI with the pod's env.
        staff_password = "chart-staff-password-1"
        made = subprocess.run(
            [sys.executable, "-m", "videoflix_api", "create-staff", "staff@example.com"],
            env={**os.environ, **release.api_env, "VIDEOFLIX_STAFF_PASSWORD": staff_password},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert made.returncode == 0, made.stderr

        # As the frontend's browser would: our CSRF check wants an Origin on cookie writes.
        frontend = {"Origin": "http://127.0.0.1:4200"}
        viewer = httpx.Client(base_url=release.api_url, timeout=30, headers=frontend)
        email, password = "viewer@example.com", "viewer-password-123"
        registered = viewer.post(
            "/users/register/",
            json={"email": email, "password": password, "confirm_password": password},
        )
        assert registered.status_code == 201, registered.text
        deadline = time.monotonic() + 30
        while not smtp_server.messages:
            assert time.monotonic() < deadline, "no confirmation mail"
            time.sleep(0.2)
        body = smtp_server.messages[-1].get_body(("plain",)).get_content()
        link = re.search(r"https?://\S+/users/confirm/\?\S+", body)
        assert link, body
        confirmed = viewer.get("/users/confirm/?" + link.group(0).split("?", 1)[1])
        assert confirmed.status_code == 302, confirmed.text
        assert (
            viewer.post(
                "/users/login/", json={"email": email, "password": password, "remember": False}
            ).status_code
            == 200
        )

        staff = httpx.Client(base_url=release.api_url, timeout=120, headers=frontend)
        assert (
            staff.post(
                "/users/login/",
                json={
                    "email": "staff@example.com",
                    "password": staff_password,
                    "remember": False,
                },
            ).status_code
            == 200
        )
        with video.open("rb") as handle:
            created = staff.post(
                "/videos/upload/",
                data={"title": "chart clip"},
                files={"file": ("clip.mp4", handle, "video/mp4")},
            )
        assert created.status_code == 201, created.text
        video_id = created.json()["id"]

        cr = f"/apis/videoflix.io/v1alpha1/namespaces/{release.namespace}/videotranscodes"
        done = kube.client.wait_for(
            f"{cr}/video-{video_id}",
            lambda obj: ((obj or {}).get("status") or {}).get("phase") in ("Succeeded", "Failed"),
            timeout=180,
            interval=0.5,
            what="the transcode to finish",
        )
        assert done is not None and done["status"]["phase"] == "Succeeded", done

        url = viewer.get(f"/content/video-url/{video_id}/", params={"quality": "120p"})
        assert url.status_code == 200, url.text
        head = httpx.get(url.json()["url"], headers={"Range": "bytes=0-65535"}, timeout=30)
        assert head.status_code == 206 and head.content[4:8] == b"ftyp"

        deleted = staff.delete(f"/videos/{video_id}/")
        assert deleted.status_code in (200, 204), deleted.text
        kube.client.wait_for(
            f"{cr}/video-{video_id}",
            lambda obj: obj is None,
            timeout=60,
            what="the VideoTranscode to go (finalizer: storage cleaned)",
        )
        left = minio_server.client().list_objects_v2(Bucket=s3_bucket, Prefix=f"videos/{video_id}/")
        assert left.get("KeyCount", 0) == 0
