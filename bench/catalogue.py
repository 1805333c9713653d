"""The whole catalogue in one `/content/` (what the unchanged client loads): time and the API's peak
memory at two catalogue sizes, next to two anchors.

    uv run python bench/catalogue.py [--sizes 10000,100000] [--repeat 3]

Starts a throwaway PostgreSQL and MinIO (as bench/api.py does), bulk-inserts the rows with COPY,
runs the API under uvicorn (one worker, default settings: unlimited, streamed) and, per size:

  * `GET /content/` (the full, streamed catalogue): wall time, and the API process's peak RSS
    during the request (VmHWM after resetting it through /proc/<pid>/clear_refs), above its RSS
    before the request;
  * anchor "bare": the same rows fetched with psycopg and written with `json.dumps` by a bare
    script (no ORM, no validation, no HTTP; all rows in memory at once), its time and peak RSS;
  * anchor "paged": the same catalogue walked through the paged endpoint (`?limit=200`, following
    `X-Next-Cursor`), its total time and the API's peak RSS.

Prints the ratios to the anchors and, the point of streaming, how the API's peak grows from the
smaller size to the larger one. Everything runs on 127.0.0.1 and stops by itself.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from videoflix_api import security  # noqa: E402
from videoflix_core.db.migrate import upgrade  # noqa: E402

# bench/api.py by path: on sys.path, `api` would be the repository's api/ folder.
_spec = importlib.util.spec_from_file_location("bench_api", REPO / "bench" / "api.py")
assert _spec is not None and _spec.loader is not None
bench_api = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_api)
add_user, insert_videos = bench_api.add_user, bench_api.insert_videos
start_api, start_minio, start_postgres = (
    bench_api.start_api, bench_api.start_minio, bench_api.start_postgres
)

# The bare anchor: rows in, JSON out, as directly as Python allows.
BARE = r"""
import json, sys, time
import psycopg
url, base = sys.argv[1], sys.argv[2]
t0 = time.perf_counter()
with psycopg.connect(url) as conn:
    rows = conn.execute(
        "SELECT id, title, description, category, created_at, thumbnail_key, converted_files,"
        " processing_state, processing_error, progress, duration_seconds FROM videos"
        " ORDER BY created_at DESC, id DESC"
    ).fetchall()
items = [
    {
        "id": r[0], "title": r[1], "description": r[2], "category": r[3],
        "created_at": r[4].isoformat(),
        "image_file": f"{base}/videos/{r[0]}/thumbnail/" if r[5] else None,
        "video_file": f"{base}/videos/{r[0]}/file/" if r[6] else None,
        "converted_files": {
            k: {f: v.get(f) for f in ("width", "height", "bitrate", "bytes", "durationSeconds")}
            for k, v in r[6].items()
        },
        "processing_state": r[7], "processing_error": r[8], "progress": r[9],
        "duration_seconds": r[10],
    }
    for r in rows
]
body = json.dumps(items, ensure_ascii=False, separators=(",", ":")).encode()
elapsed = time.perf_counter() - t0
# VmHWM, not ru_maxrss: the latter is inherited across exec from the (big) parent.
peak = next(int(line.split()[1]) for line in open("/proc/self/status")
            if line.startswith("VmHWM:"))
print(json.dumps({"seconds": elapsed, "bytes": len(body), "items": len(items),
                  "peak_kib": peak}))
"""


def kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def reset_peak(pid: int) -> None:
    # "5" resets the peak RSS (VmHWM) to the current RSS (Linux >= 4.0).
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def measure(pid: int, run: object) -> tuple[float, int, int, object]:
    """Run `run()`; its wall time, the API's RSS before, its peak during, and the result."""
    assert callable(run)
    before = kib(pid, "VmRSS")
    reset_peak(pid)
    t0 = time.perf_counter()
    result = run()
    elapsed = time.perf_counter() - t0
    return elapsed, before, kib(pid, "VmHWM"), result


def full_catalogue(client: httpx.Client) -> bytes:
    with client.stream("GET", "/content/") as response:
        response.raise_for_status()
        assert "content-length" not in response.headers  # really streamed
        return b"".join(response.iter_bytes())


def paged_walk(client: httpx.Client) -> int:
    count, cursor = 0, None
    while True:
        params: dict[str, str | int] = {"limit": 200}
        if cursor:
            params["cursor"] = cursor
        response = client.get("/content/", params=params)
        response.raise_for_status()
        count += len(response.json())
        cursor = response.headers.get("x-next-cursor")
        if not cursor:
            return count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (best kept)")
    args = parser.parse_args()
    sizes = sorted(int(n) for n in args.sizes.split(","))

    with ExitStack() as stack:
        database_url = start_postgres(stack)
        endpoint, key, secret = start_minio(stack)
        upgrade(database_url)
        plain_url = database_url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(plain_url) as conn:
            user_id = add_user(conn)

        base, secret_key, api = start_api(
            stack, database_url, endpoint, key, secret, log_level="WARNING"
        )
        token, _ = security.create_token(
            secret_key,
            user_id=user_id,
            token_type="access",
            now=datetime.now(UTC),
            lifetime=timedelta(hours=2),
        )
        client = stack.enter_context(
            httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=600)
        )
        client.get("/content/", params={"limit": 1}).raise_for_status()  # warm up

        print(
            "API: uvicorn, 1 worker, default settings; PostgreSQL and MinIO local; "
            f"2 cores shared; load average {os.getloadavg()[0]:.1f}; best of {args.repeat}"
        )
        results: dict[int, dict[str, float]] = {}
        have = 0
        for size in sizes:
            t0 = time.perf_counter()
            with psycopg.connect(plain_url) as conn:
                insert_videos(conn, have + 1, size)
            have = size
            print(f"\n{size} rows (inserted with COPY in {time.perf_counter() - t0:.1f} s)")

            runs = [measure(api.pid, lambda: full_catalogue(client)) for _ in range(args.repeat)]
            seconds, before, _, body = min(runs, key=lambda r: r[0])
            assert isinstance(body, bytes)
            items = json.loads(body)
            assert len(items) == size, (len(items), size)
            peak_all = max(r[2] for r in runs)

            bare_runs = []
            for _ in range(args.repeat):
                out = subprocess.run(
                    [sys.executable, "-c", BARE, plain_url, base],
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout
                bare_runs.append(json.loads(out))
            bare = min(bare_runs, key=lambda r: r["seconds"])
            assert bare["items"] == size

            p_seconds, p_before, p_peak, count = measure(api.pid, lambda: paged_walk(client))
            assert count == size

            results[size] = {"peak": peak_all, "before": before}
            print(
                f"  GET /content/ (streamed) : {seconds:7.2f} s  {len(body) / 1e6:6.1f} MB  "
                f"API RSS {before / 1024:6.1f} MiB before, peak {peak_all / 1024:6.1f} MiB "
                f"(+{(peak_all - before) / 1024:.1f})"
            )
            print(
                f"  bare psycopg + json.dumps: {bare['seconds']:7.2f} s  "
                f"{bare['bytes'] / 1e6:6.1f} MB  process peak {bare['peak_kib'] / 1024:6.1f} MiB"
            )
            print(
                f"  paged walk (limit=200)   : {p_seconds:7.2f} s  "
                f"{count // 200 + 1} requests  API peak {p_peak / 1024:6.1f} MiB "
                f"(+{(p_peak - p_before) / 1024:.1f})"
            )
            print(
                f"  ratio streamed/bare: time {seconds / bare['seconds']:.2f}x, "
                f"peak memory {peak_all / bare['peak_kib']:.2f}x; "
                f"streamed/paged: time {seconds / p_seconds:.2f}x"
            )
        small, large = sizes[0], sizes[-1]
        if small != large:
            growth = (results[large]["peak"] - results[small]["peak"]) / 1024
            print(
                f"\nAPI peak RSS at {large} rows / at {small} rows: "
                f"{results[large]['peak'] / results[small]['peak']:.2f}x "
                f"({growth:+.1f} MiB for {large - small} more rows)"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
