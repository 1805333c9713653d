"""The built images, run as the chart runs them: non-root, read-only root, no capabilities.

Each test drives the real image against the real test servers (MinIO, PostgreSQL, the control
plane) on loopback, so a missing package, a wrong entrypoint or a write outside the volumes
fails here and not first in a cluster.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, inspect

from tests.fixtures.minio import MinioServer
from tests.fixtures.procs import free_port
from tests.images.build import images as image_specs
from tests.images.conftest import HARDENED, Images, env_args, wait_until_or_log

# Run inside each image: who am I, what may I do, can I write the root filesystem, which of
# the named packages (argv) are installed?
SELF_CHECK = """
import errno, importlib.util, json, os, sys
caps = {l.split(':')[0]: int(l.split()[1], 16)
        for l in open('/proc/self/status') if l.startswith('Cap')}
try:
    open('/probe', 'w')
    root = 'writable'
except OSError as e:
    root = errno.errorcode[e.errno]
present = [m for m in sys.argv[1:] if importlib.util.find_spec(m) is not None]
print(json.dumps({'uid': os.getuid(), 'gid': os.getgid(), 'caps': caps, 'root': root,
                  'present': present}))
"""
# Only each component's runtime dependencies: another component's framework or a test tool in
# an image is weight and attack surface.
NOT_INSTALLED = {
    "api": ("kopf", "pytest", "schemathesis"),
    "operator": ("fastapi", "uvicorn", "pytest"),
    "transcoder": ("fastapi", "kopf", "pytest"),
}


def last_json(stdout: str) -> Any:
    return json.loads(stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", list(image_specs()))
def test_image_runs_as_its_non_root_uid_read_only_without_capabilities(
    images: Images, name: str
) -> None:
    config = images.config(name)
    assert config["User"] == "10001:10001"
    # No --user: the image's own USER must be the non-root one.
    result = images.run(
        *HARDENED, "--entrypoint=python", images.refs[name], "-c", SELF_CHECK, *NOT_INSTALLED[name]
    )
    seen = last_json(result.stdout)
    assert seen["present"] == [], f"{name} image installs {seen['present']}"
    assert (seen["uid"], seen["gid"]) == (10001, 10001)
    assert seen["caps"]["CapEff"] == 0 and seen["caps"]["CapPrm"] == 0
    assert seen["caps"]["CapBnd"] == 0
    assert seen["root"] == "EROFS"


def test_transcoder_image_probes_encodes_into_scratch_and_publishes(
    images: Images, minio_server: MinioServer, s3_bucket: str, tmp_path: Path, scratch: Path
) -> None:
    source = tmp_path / "source.mp4"
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
         "testsrc2=size=320x180:rate=10:duration=1", "-f", "lavfi", "-i",
         "sine=frequency=440:duration=1", "-c:v", "libx264", "-preset", "ultrafast",
         "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(source)],
        check=True,
    )
    key = "videos/7/source/source.mp4"
    minio_server.client().upload_file(str(source), s3_bucket, key)
    # The termination log as the kubelet mounts it: a host file at /dev/termination-log.
    termination = tmp_path / "termination-log"
    termination.write_text("")
    termination.chmod(0o666)
    pod = [
        *HARDENED,
        f"--volume={scratch}:/scratch",
        f"--volume={termination}:/dev/termination-log",
        *env_args(minio_server.env()),
        images.refs["transcoder"],
    ]
    probe = last_json(images.run(*pod, "probe", "--source", f"s3://{s3_bucket}/{key}").stdout)
    assert probe["result"]["width"] == 320 and probe["result"]["height"] == 180
    # The termination log carries the result itself, as the operator reads it from the pod.
    assert json.loads(termination.read_text()) == probe["result"]

    rendition = images.run(
        *pod, "rendition", "--source", f"s3://{s3_bucket}/{key}",
        "--dest", f"s3://{s3_bucket}/videos/7/", "--name", "120p", "--width", "214",
        "--height", "120", "--preset", "ultrafast",
    )
    [made] = last_json(rendition.stdout)["result"]["renditions"]
    assert (made["width"], made["height"]) == (214, 120)
    assert json.loads(termination.read_text())["renditions"][0]["file"] == made["file"]
    keys = set(minio_server.keys(s3_bucket, "videos/7/120p/"))
    assert keys == {"videos/7/120p/video.mp4", "videos/7/120p/index.m3u8"}
    body = minio_server.client().get_object(Bucket=s3_bucket, Key=made["file"])["Body"].read()
    assert body[4:8] == b"ftyp" and len(body) == made["bytes"]
    # FFmpeg worked in the scratch volume and the step left nothing behind there.
    assert list(scratch.iterdir()) == []


def test_api_image_migrates_the_database_and_answers_ready(
    images: Images, database_url: str, minio_server: MinioServer, s3_bucket: str, tmp_path: Path
) -> None:
    env = {
        "VIDEOFLIX_DATABASE_URL": database_url,
        "VIDEOFLIX_SECRET_KEY": "image-test-" + "k" * 40,
        "VIDEOFLIX_PUBLIC_BASE_URL": "https://api.videoflix.test",
        **minio_server.env(s3_bucket),
    }
    common = [*HARDENED, "--tmpfs=/tmp:rw,size=16m", *env_args(env), images.refs["api"]]
    # The chart's migration hook Job: `python -m videoflix_core.db.migrate`.
    images.run(*common, "python", "-m", "videoflix_core.db.migrate")
    engine = create_engine(database_url)
    try:
        assert {"alembic_version", "videos"} <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()

    port = free_port()
    # The image's own CMD, on a free port (host network is shared with other test sessions).
    command = [str(c) for c in images.config("api")["Cmd"]]
    command[command.index("--port") + 1] = str(port)
    command[command.index("--host") + 1] = "127.0.0.1"
    name = f"videoflix-api-{port}"
    log = (tmp_path / "api.log").open("wb")
    proc = subprocess.Popen(
        images.podman.argv("run", "--rm", f"--name={name}", *common, *command),
        env=images.podman.env(), stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError((tmp_path / "api.log").read_text()[-3000:])
            return httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200

        wait_until_or_log(ready, "the API container's /ready", tmp_path / "api.log")
        body = httpx.get(f"http://127.0.0.1:{port}/ready", timeout=5).json()
        assert body == {"status": "ok", "checks": {"database": "ok", "storage": "ok"}}
    finally:
        images.podman.run("stop", "--time=5", name, check=False)
        proc.wait(30)
        log.close()
