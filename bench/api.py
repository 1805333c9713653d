"""The hot API endpoints against a bare-FastAPI anchor, in one run, under a loopback load generator.

    uv run python bench/api.py [--rows 100000] [--duration 8] [--connections 16]
                               [--layouts 1x1,1x2,2x1]

Starts a throwaway PostgreSQL (Debian's server) and MinIO (tools/gotool.sh), fills the videos
table with --rows rows, then for each layout (replicas x uvicorn workers, all replicas sharing
the one database) runs our API and the anchor (bench/anchor_app.py: the same rows, fields and
lifetimes through psycopg, pydantic, pyjwt and boto3, with nothing else) with the same uvicorn
settings, one after the other, and drives each with Debian's `wrk` (apt-get install wrk) on
127.0.0.1 only; every run stops by itself. Replicas get their share of the connections from one
wrk each. The playback URL asks for a random video each request (a cache of one URL would not
show what presigning costs).

Prints, per layout, requests/s, p50/p99 latency and the servers' CPU time per request (user +
system of every server process: unlike req/s it does not depend on what else the machine runs)
for ours and the anchor, and ours/anchor with the target next to it; each server's peak memory
(VmHWM) after a burst of concurrent sign-ins (argon2 bounds the API's memory), the figure the
chart's API memory limit comes from (bench/figures.json). Then checks that the login rate limit
is one limit across every replica and worker.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
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
            "-c",
            "max_connections=300",  # replicas x workers x (pool + overflow) of ours and the anchor
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
    """User + system CPU time of a process and all its descendants so far (uvicorn's workers are
    children of its supervisor); a contention-independent cost measure."""
    total = 0.0
    for current in process_tree(pid):
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:  # exited meanwhile
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (uvicorn's supervisor and its workers)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        try:
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except FileNotFoundError:
            continue
        found.append(current)
        todo += [int(child) for child in children]
    return found


def peak_rss_mib(pid: int) -> float:
    """The kernel's high-water mark of resident memory (VmHWM) summed over a server's process
    tree: its peak so far, with nothing sampled or missed."""
    total_kib = 0
    for current in process_tree(pid):
        try:
            status = Path(f"/proc/{current}/status").read_text()
        except FileNotFoundError:
            continue
        match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
        total_kib += int(match.group(1)) if match else 0
    return total_kib / 1024


def sign_in_burst(bases: list[str], concurrency: int) -> None:
    """`concurrency` wrong-password sign-ins at once per server (unknown e-mails: the dummy
    verification costs what a real one does): the argon2 runs are what bound the API's memory."""
    def attempt(n: int) -> int:
        body = {"email": f"burst{n}@example.com", "password": "wrong", "remember": False}
        url = f"{bases[n % len(bases)]}/users/login/"
        return httpx.post(url, json=body, timeout=60).status_code

    with ThreadPoolExecutor(concurrency * len(bases)) as pool:
        codes = list(pool.map(attempt, range(concurrency * len(bases))))
    assert set(codes) <= {401, 429}, codes


def wrk_script(path_template: str, ids: int) -> str:
    """A wrk Lua script asking for `path_template` with a random video id (1..ids) each time."""
    script = Path(tempfile.mktemp(prefix="videoflix-bench-wrk-", suffix=".lua"))
    before, after = path_template.split("{id}")
    script.write_text(
        f"math.randomseed({random.randrange(1 << 30)})\n"
        "request = function()\n"
        f'  return wrk.format(nil, "{before}" .. math.random(1, {ids}) .. "{after}")\n'
        "end\n"
    )
    return str(script)


def parse_wrk(out: str) -> dict[str, float]:
    lat = {
        p: float(v) * _UNITS[u]
        for p, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
    }
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50": lat["50"],
        "p99": lat["99"],
        "requests": float(re.search(r"(\d+) requests in", out).group(1)),  # type: ignore[union-attr]
        "non2xx": float(errors.group(1)) if errors else 0.0,
    }


def run_wrk(
    urls: list[str],
    token: str,
    duration: int,
    connections: int,
    server_pids: list[int],
    script: str | None = None,
) -> dict[str, float]:
    """One wrk per replica URL at the same time, the connections split between them. CPU per
    request sums every server process; p50/p99 are the worst replica's."""
    cpu_before = sum(cpu_seconds(pid) for pid in server_pids)
    share = max(1, connections // len(urls))
    procs = [
        subprocess.Popen(
            [
                "wrk", "-t1", f"-c{share}", f"-d{duration}s", "--latency",
                "-H", f"Authorization: Bearer {token}",
                *(["-s", script] if script else []),
                url,
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for url in urls
    ]
    results = [parse_wrk(proc.communicate()[0]) for proc in procs]
    cpu = sum(cpu_seconds(pid) for pid in server_pids) - cpu_before
    total = sum(r["requests"] for r in results)
    return {
        "rps": sum(r["rps"] for r in results),
        "p50": max(r["p50"] for r in results),
        "p99": max(r["p99"] for r in results),
        "cpu_ms": cpu * 1000 / max(total, 1),
        "requests": total,
        "non2xx": sum(r["non2xx"] for r in results),
    }


def _uvicorn(
    stack: ExitStack, app: str, env: dict[str, str], port: int, workers: int, what: str
) -> subprocess.Popen[bytes]:
    """`app` under uvicorn with the one set of server settings ours and the anchor share."""
    log_path = Path(tempfile.mktemp(prefix=f"videoflix-bench-{what}-"))
    stack.callback(log_path.unlink, missing_ok=True)  # runs after the stack closed the file
    log = stack.enter_context(log_path.open("wb"))
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "uvicorn", app, "--factory",
            "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
            "--workers", str(workers),
        ],
        env=env,
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    stack.callback(stop, proc)
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: httpx.get(f"{base}/health").status_code in (200, 404), what, timeout=60)
    return proc


def start_api(
    stack: ExitStack,
    database_url: str,
    endpoint: str,
    key: str,
    secret: str,
    log_level: str = "INFO",
    *,
    secret_key: str | None = None,
    workers: int = 1,
) -> tuple[str, str, subprocess.Popen[bytes]]:
    """Our API under uvicorn on a free port: (base URL, secret key, process)."""
    secret_key = secret_key or secrets.token_urlsafe(48)
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
    api = _uvicorn(stack, "videoflix_api.main:create_app", env, port, workers, "api")
    return base, secret_key, api


def start_anchor(
    stack: ExitStack,
    database_url: str,
    endpoint: str,
    key: str,
    secret: str,
    *,
    secret_key: str,
    workers: int = 1,
) -> tuple[str, subprocess.Popen[bytes]]:
    """The anchor app (bench/anchor_app.py) under the same uvicorn settings: (base URL, process)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "ANCHOR_DATABASE_URL": database_url.replace("postgresql+psycopg://", "postgresql://"),
        "ANCHOR_SECRET": secret_key,
        "ANCHOR_BASE_URL": base,
        "ANCHOR_S3_ENDPOINT": endpoint,
        "ANCHOR_S3_KEY": key,
        "ANCHOR_S3_SECRET": secret,
        "ANCHOR_S3_BUCKET": "bench",
    }
    return base, _uvicorn(stack, "bench.anchor_app:create_app", env, port, workers, "anchor")


# (name, path, target of ours/anchor CPU per request); `{id}` is a random video id.
ROUTES = [
    ("list, first page (/content/?limit=50)", "/content/?limit=50", 1.0),
    (
        "playback URL (/content/video-url/<id>/?quality=720p)",
        "/content/video-url/{id}/?quality=720p",
        1.0,
    ),
]
# Ours only (the anchor has no cursor or filter): that deep pages and filters cost what page 1 does.
EXTRA = [
    ("list, page at 90% depth (/videos/?cursor=…)", "/videos/?limit=50&cursor={cursor}"),
    ("list, category filter (/videos/?category=…)", "/videos/?limit=50&category=music"),
]


def check_bodies(bases: list[str], path: str, token: str) -> None:
    """Correctness before speed: every server answers the route with a full page or a URL."""
    for base in bases:
        r = httpx.get(base + path, headers={"Authorization": f"Bearer {token}"})
        r.raise_for_status()
        body = r.json()
        items = body if isinstance(body, list) else body.get("results", body)
        assert ("url" in body) or len(items) == 50, (base, path, body)


def shared_login_limit(bases: list[str], limit: int, database_url: str) -> tuple[int, int]:
    """Wrong-password logins spread over every replica (a new connection each, so the kernel
    spreads them over the workers too): (answered before the first 429, 429s)."""
    with psycopg.connect(database_url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        conn.execute("DELETE FROM rate_limit_buckets")  # an earlier layout's window
    answered = throttled = 0
    for i in range(limit + 6):
        r = httpx.post(
            f"{bases[i % len(bases)]}/users/login/",
            json={"email": f"nobody{i}@example.com", "password": "wrong", "remember": False},
        )
        if r.status_code == 429:
            throttled += 1
        elif throttled == 0:
            answered += 1
    return answered, throttled


def print_row(name: str, result: dict[str, float]) -> None:
    flag = f"  ({int(result['non2xx'])} non-2xx!)" if result["non2xx"] else ""
    print(
        f"  {name:62} {result['rps']:7.0f} {result['p50']:8.2f} {result['p99']:8.2f}"
        f" {result['cpu_ms']:9.3f}{flag}"
    )


def combine(bursts: list[dict[str, float]]) -> dict[str, float]:
    """Alternating bursts of one app as one result: CPU per request over all of them, req/s and
    latency percentiles their median (the machine's load drifts between bursts)."""
    requests = sum(b["requests"] for b in bursts)
    return {
        "rps": statistics.median(b["rps"] for b in bursts),
        "p50": statistics.median(b["p50"] for b in bursts),
        "p99": statistics.median(b["p99"] for b in bursts),
        "cpu_ms": sum(b["cpu_ms"] * b["requests"] for b in bursts) / max(requests, 1),
        "requests": requests,
        "non2xx": sum(b["non2xx"] for b in bursts),
    }


def run_layout(
    args: argparse.Namespace,
    services: tuple[str, str, str, str],
    replicas: int,
    workers: int,
    token: str,
    secret_key: str,
    deep_cursor: str,
) -> list[tuple[str, float, float, float, float, float]]:
    """Ours and the anchor side by side in `replicas` x `workers`, loaded in alternating bursts
    (ours, anchor, ours, …) so that both see the same machine; returns per route (name, ours CPU,
    anchor CPU, target, ours p99, anchor p99)."""
    database_url, endpoint, key, secret = services
    results: dict[str, dict[str, dict[str, float]]] = {}
    with ExitStack() as stack:
        ours = [
            start_api(
                stack, database_url, endpoint, key, secret, secret_key=secret_key, workers=workers
            )
            for _ in range(replicas)
        ]
        anchors = [
            start_anchor(
                stack, database_url, endpoint, key, secret, secret_key=secret_key, workers=workers
            )
            for _ in range(replicas)
        ]
        apps = {
            "ours": ([b for b, _, _ in ours], [p.pid for _, _, p in ours]),
            "anchor": ([b for b, _ in anchors], [p.pid for _, p in anchors]),
        }
        burst = max(1, args.duration // args.rounds)
        for name, path, _ in ROUTES:
            script = wrk_script(path, args.rows) if "{id}" in path else None
            if script:
                stack.callback(Path(script).unlink, missing_ok=True)
            bursts: dict[str, list[dict[str, float]]] = {"ours": [], "anchor": []}
            for bases, _ in apps.values():
                check_bodies(bases, path.replace("{id}", "1"), token)
            for _ in range(args.rounds):
                for which_app, (bases, pids) in apps.items():
                    urls = [b + path.replace("{id}", "1") for b in bases]
                    bursts[which_app].append(
                        run_wrk(urls, token, burst, args.connections, pids, script)
                    )
            for which_app in apps:
                results.setdefault(name, {})[which_app] = combine(bursts[which_app])
                print_row(f"{which_app:6} {name}", results[name][which_app])
        # Peak memory per server (one replica: supervisor + workers) after the routes and a
        # burst of sign-ins, ours next to the anchor (which hashes nothing).
        with psycopg.connect(database_url.replace("postgresql+psycopg://", "postgresql://")) as c:
            c.execute("DELETE FROM rate_limit_buckets")
        sign_in_burst(apps["ours"][0], args.sign_in_burst)
        ours_rss = max(peak_rss_mib(pid) for pid in apps["ours"][1])
        anchor_rss = max(peak_rss_mib(pid) for pid in apps["anchor"][1])
        print(
            f"  peak RSS per replica (VmHWM, after {args.sign_in_burst} concurrent sign-ins): "
            f"ours {ours_rss:.0f} MiB, anchor {anchor_rss:.0f} MiB, {ours_rss / anchor_rss:.2f}x"
        )
        bases, pids = apps["ours"]
        if replicas * workers == 1:
            for name, path in EXTRA:
                path = path.replace("{cursor}", deep_cursor)
                check_bodies(bases, path, token)
                result = run_wrk(
                    [b + path for b in bases], token, args.duration, args.connections, pids
                )
                print_row(f"ours   {name}", result)
        else:
            answered, throttled = shared_login_limit(bases, args.login_limit, database_url)
            verdict = "one shared limit" if answered == args.login_limit else "NOT SHARED"
            print(
                f"  login limit {args.login_limit} over {replicas} replica(s) x {workers}"
                f" worker(s): {answered} answered, then {throttled} x 429 -> {verdict}"
            )
    return [
        (
            name,
            results[name]["ours"]["cpu_ms"],
            results[name]["anchor"]["cpu_ms"],
            target,
            results[name]["ours"]["p99"],
            results[name]["anchor"]["p99"],
        )
        for name, _, target in ROUTES
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--duration", type=int, default=9, help="seconds per app and route")
    parser.add_argument("--rounds", type=int, default=3, help="alternating bursts per route")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--layouts", default="1x1,1x2,2x1", help="replicas x workers, comma-separated"
    )
    parser.add_argument("--login-limit", type=int, default=10, help="the API's default")
    parser.add_argument(
        "--sign-in-burst",
        type=int,
        default=8,
        help="concurrent sign-ins before the memory reading (2x the default hash concurrency)",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: apt-get install wrk")
    layouts = [tuple(int(n) for n in layout.split("x")) for layout in args.layouts.split(",")]

    with ExitStack() as stack:
        t0 = time.perf_counter()
        database_url = start_postgres(stack)
        endpoint, key, secret = start_minio(stack)
        user_id, deep_cursor = fill(database_url, args.rows)
        print(f"setup: {args.rows} videos in {time.perf_counter() - t0:.1f} s")
        secret_key = secrets.token_urlsafe(48)
        token, _ = security.create_token(
            secret_key,
            user_id=user_id,
            token_type="access",
            now=datetime.now(UTC),
            lifetime=timedelta(hours=2),
        )
        print(
            f"load: wrk, {args.connections} connections in all, {args.duration} s each; "
            "uvicorn (same settings for both); all on 127.0.0.1"
            f" ({os.cpu_count()} cores shared, load average {os.getloadavg()[0]:.1f})"
        )
        summary = []
        for replicas, workers in layouts:
            print(f"\n{replicas} replica(s) x {workers} worker(s), one database")
            print(
                f"  {'app    scenario':62} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8}"
                f" {'CPU ms/req':>9}"
            )
            services = (database_url, endpoint, key, secret)
            for row in run_layout(
                args, services, replicas, workers, token, secret_key, deep_cursor
            ):
                summary.append((f"{replicas}x{workers}", *row))
        print(f"\n{'layout':7} {'route':55} {'ours/anchor CPU':>16} {'target':>7}"
              f" {'p99 ours':>9} {'p99 anchor':>11}")
        for layout, name, ours, anchor, target, p99_ours, p99_anchor in summary:
            ratio = ours / anchor
            verdict = "ok" if ratio <= target else f"MISSED by {ratio / target - 1:.0%}"
            print(
                f"{layout:7} {name:55} {ratio:15.2f}x {target:6.1f}x {p99_ours:8.2f}ms"
                f" {p99_anchor:9.2f}ms  {verdict}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
