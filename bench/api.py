"""Throughput and latency of the hot API endpoints under a loopback load generator (wrk).

    uv run python bench/api.py [--rows 100000] [--duration 10] [--connections 16]

Starts a throwaway PostgreSQL (Debian's server) and MinIO (tools/gotool.sh), fills the videos
table with --rows rows, runs the API under uvicorn (one worker) and drives it with Debian's `wrk`
(apt-get install wrk) on 127.0.0.1 only; every run stops by itself. Prints requests/s and
p50/p99 latency and the API process's CPU time per request (which, unlike req/s, does not
depend on what else the machine runs) for the video list (first page of 50, a deep keyset page,
a category filter) and the per-quality playback URL endpoint (one presign per request).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import httpx
import psycopg
from botocore.config import Config

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from videoflix_api import security  # noqa: E402
from videoflix_api.services.videos import encode_cursor  # noqa: E402
from videoflix_core.db.migrate import upgrade  # noqa: E402

from tests.fixtures.procs import free_port, stop, wait_until, which  # noqa: E402

CATEGORIES = ["drama", "comedy", "documentary", "action", "kids", "music", "sports", "news"]


def start_postgres(stack: ExitStack) -> str:
    import glob

    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    initdb, postgres = which("initdb", *bins), which("postgres", *bins)
    if not initdb or not postgres:
        raise SystemExit("PostgreSQL server binaries not found: apt-get install postgresql")
    base = Path(tempfile.mkdtemp(prefix="videoflix-bench-pg-"))
    stack.callback(shutil.rmtree, base, True)
    data, sock = base / "data", base / "sock"
    data.mkdir()
    sock.mkdir()
    run_as: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root
        run_as = ["runuser", "-u", "nobody", "--"]
        for path in (base, data, sock):
            os.chown(path, 65534, 65534)
    subprocess.run(
        [
            *run_as,
            initdb,
            "-D",
            str(data),
            "-U",
            "videoflix",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
        ],
        check=True,
        capture_output=True,
    )
    port = free_port()
    proc = subprocess.Popen(
        [
            *run_as,
            postgres,
            "-D",
            str(data),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"port={port}",
            "-c",
            f"unix_socket_directories={sock}",
            "-c",
            "fsync=off",
            "-c",
            "shared_buffers=256MB",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    stack.callback(stop, proc)
    admin = f"postgresql://videoflix@127.0.0.1:{port}/postgres"
    wait_until(lambda: psycopg.connect(admin).close() is None, "PostgreSQL", timeout=60)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("CREATE DATABASE bench")
    return f"postgresql+psycopg://videoflix@127.0.0.1:{port}/bench"


def start_minio(stack: ExitStack) -> tuple[str, str, str]:
    binary = (
        subprocess.run(
            ["bash", str(REPO / "tools" / "gotool.sh"), "minio"],
            check=True,
            capture_output=True,
            text=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    data = Path(tempfile.mkdtemp(prefix="videoflix-bench-minio-"))
    stack.callback(shutil.rmtree, data, True)
    port = free_port()
    user, password = "bench", "bench-secret-key"
    proc = subprocess.Popen(
        [
            binary,
            "server",
            "--quiet",
            "--address",
            f"127.0.0.1:{port}",
            "--console-address",
            f"127.0.0.1:{free_port()}",
            str(data),
        ],
        env={
            **os.environ,
            "MINIO_ROOT_USER": user,
            "MINIO_ROOT_PASSWORD": password,
            "MINIO_BROWSER": "off",
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    stack.callback(stop, proc)
    endpoint = f"http://127.0.0.1:{port}"
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=user,
        aws_secret_access_key=password,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}),
    )
    wait_until(lambda: s3.list_buckets() is not None, "MinIO", timeout=60)
    s3.create_bucket(Bucket="bench")
    return endpoint, user, password


def insert_videos(conn: psycopg.Connection[Any], first: int, last: int) -> None:
    """COPY the benchmark videos numbered first..last (inclusive), ready with three rungs."""
    rng = random.Random(first)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    with conn.cursor().copy(
        "COPY videos (title, description, category, created_at, updated_at, source_key,"
        " processing_state, converted_files, thumbnail_key, duration_seconds, progress,"
        " transcode_generation) FROM STDIN"
    ) as copy:
        for i in range(first, last + 1):
            when = start + timedelta(seconds=i * 60 + rng.randint(0, 59))
            files = {
                name: {
                    "width": h * 16 // 9,
                    "height": h,
                    "bitrate": h * 4000,
                    "bytes": h * 100_000,
                    "durationSeconds": 90.0,
                    "file": f"videos/{i}/{name}/video.mp4",
                    "playlist": f"videos/{i}/{name}/index.m3u8",
                }
                for name, h in (("120p", 120), ("360p", 360), ("720p", 720))
            }
            copy.write_row(
                (
                    f"Video number {i}",
                    "A benchmark video " * 5,
                    rng.choice(CATEGORIES),
                    when,
                    when,
                    f"videos/{i}/source/g1-source.mp4",
                    "ready",
                    json.dumps(files),
                    f"videos/{i}/thumbnails/poster.jpg",
                    90.0,
                    100,
                    1,
                )
            )
    conn.execute("ANALYZE videos")


def add_user(conn: psycopg.Connection[Any], email: str = "bench@example.com") -> int:
    row = conn.execute(
        "INSERT INTO users (email, password_hash, is_active, is_staff, created_at)"
        " VALUES (%s, %s, true, false, now()) RETURNING id",
        (email, security.hash_password(secrets.token_urlsafe(16))),
    ).fetchone()
    assert row is not None
    return int(row[0])


def fill(database_url: str, rows: int) -> tuple[int, str]:
    """Insert `rows` videos (COPY) and a user; returns the user id and a deep-page cursor."""
    upgrade(database_url)
    url = database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url) as conn:
        insert_videos(conn, 1, rows)
        user_id = add_user(conn)
        created_at, video_id = conn.execute(
            "SELECT created_at, id FROM videos ORDER BY created_at DESC, id DESC OFFSET %s LIMIT 1",
            (int(rows * 0.9),),
        ).fetchone()  # type: ignore[misc]
    return user_id, encode_cursor(created_at, video_id)


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (contention-independent cost measure)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_wrk(
    url: str, token: str, duration: int, connections: int, server_pid: int
) -> dict[str, float]:
    cpu_before = cpu_seconds(server_pid)
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{duration}s",
            "--latency",
            "-H",
            f"Authorization: Bearer {token}",
            url,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lat = {
        p: float(v) * _UNITS[u]
        for p, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
    }
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return {
        "rps": rps,
        "p50": lat["50"],
        "p99": lat["99"],
        "cpu_ms": (cpu_seconds(server_pid) - cpu_before) * 1000 / max(total, 1),
        "non2xx": float(errors.group(1)) if errors else 0.0,
    }


def start_api(
    stack: ExitStack,
    database_url: str,
    endpoint: str,
    key: str,
    secret: str,
    log_level: str = "INFO",
) -> tuple[str, str, subprocess.Popen[bytes]]:
    """Our API under uvicorn on a free port: (base URL, secret key, process)."""
    secret_key = secrets.token_urlsafe(48)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "VIDEOFLIX_SECRET_KEY": secret_key,
        "VIDEOFLIX_PUBLIC_BASE_URL": base,
        "VIDEOFLIX_DATABASE_URL": database_url,
        "VIDEOFLIX_S3_ENDPOINT_URL": endpoint,
        "VIDEOFLIX_S3_BUCKET": "bench",
        "VIDEOFLIX_S3_ACCESS_KEY_ID": key,
        "VIDEOFLIX_S3_SECRET_ACCESS_KEY": secret,
        "VIDEOFLIX_LOG_LEVEL": log_level,
    }
    log = stack.enter_context(open(tempfile.mktemp(prefix="videoflix-bench-api-"), "wb"))  # noqa: SIM115 (the stack closes it)
    api = subprocess.Popen(
        [
            sys.executable, "-m", "uvicorn", "videoflix_api.main:create_app", "--factory",
            "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    stack.callback(stop, api)
    wait_until(lambda: httpx.get(f"{base}/health").status_code == 200, "API", timeout=60)
    return base, secret_key, api


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--duration", type=int, default=10, help="seconds per scenario")
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: apt-get install wrk")

    with ExitStack() as stack:
        t0 = time.perf_counter()
        database_url = start_postgres(stack)
        endpoint, key, secret = start_minio(stack)
        user_id, deep_cursor = fill(database_url, args.rows)
        print(f"setup: {args.rows} videos in {time.perf_counter() - t0:.1f} s")

        base, secret_key, api = start_api(stack, database_url, endpoint, key, secret)

        token, _ = security.create_token(
            secret_key,
            user_id=user_id,
            token_type="access",
            now=datetime.now(UTC),
            lifetime=timedelta(hours=2),
        )
        some_id = args.rows // 2
        scenarios = [
            ("list, first page (/content/?limit=50)", f"{base}/content/?limit=50"),
            (
                "list, page at 90% depth (/videos/?cursor=…)",
                f"{base}/videos/?limit=50&cursor={deep_cursor}",
            ),
            (
                "list, category filter (/videos/?category=…)",
                f"{base}/videos/?limit=50&category=music",
            ),
            (
                "playback URL (/content/video-url/<id>/?quality=720p)",
                f"{base}/content/video-url/{some_id}/?quality=720p",
            ),
        ]
        headers = {"Authorization": f"Bearer {token}"}
        for _, url in scenarios:  # correctness before speed
            r = httpx.get(url, headers=headers)
            r.raise_for_status()
            body = r.json()
            items = body if isinstance(body, list) else body.get("results", body)
            assert ("url" in body) or len(items) == 50, url
        print(
            f"load: wrk, 1 thread, {args.connections} connections, {args.duration} s each; "
            "API: uvicorn, 1 worker; all on 127.0.0.1 (2 cores shared)"
        )
        print(f"machine load average before: {os.getloadavg()[0]:.1f} (2 cores)")
        print(f"{'scenario':55} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'API CPU ms/req':>15}")
        for name, url in scenarios:
            result = run_wrk(url, token, args.duration, args.connections, api.pid)
            flag = f"  ({int(result['non2xx'])} non-2xx!)" if result["non2xx"] else ""
            print(
                f"{name:55} {result['rps']:7.0f} {result['p50']:8.2f} {result['p99']:8.2f}"
                f" {result['cpu_ms']:15.2f}{flag}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
