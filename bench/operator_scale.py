"""Operator scale run: N VideoTranscodes against the real control plane, pods completed by the
local kubelet's fast mode (no FFmpeg), the operator as a real `kopf run` process.

Reports, from watching the CRs and sampling the operator process:
  - first-reconcile latency (CR created → first status written) p50/p95/p99/max,
  - end-to-end latency (created → Succeeded) percentiles and throughput (CRs per second),
  - operator memory (peak and final RSS) and CPU seconds,
  - reconcile durations from the operator's own histogram (mean, and bucket-estimated p95).

    uv run python bench/operator_scale.py [--count 1000] [--cap 50] [--timeout 1800]

Each CR plans probe + 120p + 360p + thumbnail (a 480p probe result), so N CRs make 4N Jobs.
No database (VIDEOFLIX_DATABASE_URL unset): this measures the cluster side only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from videoflix_core.transcode import videotranscode_manifest  # noqa: E402

from tests.cluster.fixtures import Kube, start_kube, stop_kube  # noqa: E402
from tests.cluster.kubelet import FastResult  # noqa: E402
from tests.fixtures.procs import free_port  # noqa: E402

PROBE = {
    "durationSeconds": 2.0,
    "width": 854,
    "height": 480,
    "rotation": 0,
    "fps": 25.0,
    "videoCodec": "h264",
    "audioCodec": "aac",
    "bitrate": 1000000,
}


def fast_result(pod: dict[str, Any]) -> FastResult:
    """What the transcoder would have printed for this pod's arguments."""
    args = pod["spec"]["containers"][0].get("args") or []
    command = args[0] if args else ""
    dest = args[args.index("--dest") + 1].split("/", 3)[-1] if "--dest" in args else ""
    if command == "probe":
        result: dict[str, Any] = PROBE
    elif command == "rendition":
        name = args[args.index("--name") + 1]
        width = int(args[args.index("--width") + 1])
        height = int(args[args.index("--height") + 1])
        result = {
            "renditions": [
                {
                    "name": name,
                    "width": width,
                    "height": height,
                    "bitrate": 500000,
                    "bytes": 100000,
                    "durationSeconds": 2.0,
                    "encodeSeconds": 0.5,
                    "file": f"{dest}{name}/video.mp4",
                    "playlist": f"{dest}{name}/index.m3u8",
                }
            ]
        }
    elif command == "thumbnail":
        result = {"poster": f"{dest}thumbnails/poster.jpg", "sprite": None, "vtt": None}
    else:
        return FastResult(2, json.dumps({"error": f"unknown command {command!r}"}))
    return FastResult(0, json.dumps(result))


def percentiles(values: list[float]) -> str:
    if not values:
        return "n/a"
    ordered = sorted(values)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return (
        f"p50 {pick(0.50):.2f}s  p95 {pick(0.95):.2f}s  p99 {pick(0.99):.2f}s  "
        f"max {ordered[-1]:.2f}s"
    )


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return 0.0


def scrape(port: int) -> dict[str, float]:
    import urllib.request

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("videoflix_reconcile_duration_seconds"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def reconcile_summary(metrics: dict[str, float]) -> str:
    count = metrics.get("videoflix_reconcile_duration_seconds_count", 0)
    total = metrics.get("videoflix_reconcile_duration_seconds_sum", 0)
    if not count:
        return "no reconciles recorded"
    buckets = sorted(
        (float(k.split('le="')[1].split('"')[0]), v)
        for k, v in metrics.items()
        if "_bucket" in k and 'le="+Inf"' not in k
    )
    p95 = next((le for le, n in buckets if n >= 0.95 * count), float("inf"))
    return (
        f"{int(count)} reconciles, mean {1000 * total / count:.1f} ms, p95 <= {p95 * 1000:.0f} ms"
    )


def watch_crs(
    kube: Kube, path: str, seen: dict[str, dict[str, float]], stop: threading.Event, names: set[str]
) -> None:
    client = kube.new_client()
    version = client.get(path)["metadata"]["resourceVersion"]
    while not stop.is_set():
        try:
            for event in client.watch(path, version, timeout_seconds=30):
                obj = event.get("object") or {}
                if event.get("type") == "ERROR":
                    version = client.get(path)["metadata"]["resourceVersion"]
                    break
                version = obj.get("metadata", {}).get("resourceVersion", version)
                name = obj.get("metadata", {}).get("name")
                phase = (obj.get("status") or {}).get("phase")
                if name in names and phase:
                    marks = seen.setdefault(name, {})
                    marks.setdefault("first", time.monotonic())
                    if phase in ("Succeeded", "Failed"):
                        marks.setdefault(phase, time.monotonic())
                if stop.is_set():
                    break
        except Exception:  # the watch is restarted; the bench must not die on a reconnect
            time.sleep(0.5)
    client.close()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--cap", type=int, default=50, help="operator's max running Jobs")
    parser.add_argument("--timeout", type=float, default=1800)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="videoflix-bench-"))
    kube = start_kube(workdir)
    namespace = kube.create_namespace("bench-operator")
    kube.client.create(
        f"/api/v1/namespaces/{namespace}/serviceaccounts",
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "videoflix-transcoder"},
        },
    )
    kube.client.create(
        f"/api/v1/namespaces/{namespace}/secrets",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "videoflix-s3"},
            "stringData": {"VIDEOFLIX_S3_ENDPOINT_URL": "http://127.0.0.1:9"},
        },
    )
    kube.kubelet.set_fast_mode(fast_result)
    metrics_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIDEOFLIX_")}
    env.update(kube.env())
    env.update(
        {
            "VIDEOFLIX_NAMESPACE": namespace,
            "VIDEOFLIX_TRANSCODER_IMAGE": "bench/videoflix-transcoder:fast",
            "VIDEOFLIX_MAX_RUNNING_JOBS": str(args.cap),
            "VIDEOFLIX_METRICS_PORT": str(metrics_port),
            "VIDEOFLIX_SCHEDULER_INTERVAL_SECONDS": "2",
        }
    )
    log_path = workdir / "operator.log"
    kopf = str(Path(sys.executable).with_name("kopf"))
    with log_path.open("wb") as log:
        operator = subprocess.Popen(
            [
                kopf,
                "run",
                "-m",
                "videoflix_operator.main",
                "--namespace",
                namespace,
                "--standalone",
                "--liveness",
                f"http://127.0.0.1:{free_port()}/healthz",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    path = f"/apis/videoflix.io/v1alpha1/namespaces/{namespace}/videotranscodes"
    names = {f"video-{i}" for i in range(1, args.count + 1)}
    seen: dict[str, dict[str, float]] = {}
    created: dict[str, float] = {}
    stop = threading.Event()
    watcher = threading.Thread(target=watch_crs, args=(kube, path, seen, stop, names), daemon=True)
    peak_rss = 0
    try:
        time.sleep(3)  # the operator's watches are up
        watcher.start()
        began = time.monotonic()
        for i in range(1, args.count + 1):
            manifest = videotranscode_manifest(i, "media", f"videos/{i}/source/a.mp4", 0, namespace)
            created[manifest["metadata"]["name"]] = time.monotonic()
            kube.client.create(path, manifest)
        create_seconds = time.monotonic() - began
        deadline = began + args.timeout
        while time.monotonic() < deadline:
            peak_rss = max(peak_rss, rss_kib(operator.pid))
            finished = sum(1 for m in seen.values() if "Succeeded" in m or "Failed" in m)
            if finished >= args.count or operator.poll() is not None:
                break
            time.sleep(1)
        ended = time.monotonic()
        metrics = scrape(metrics_port)
        final_rss = rss_kib(operator.pid)
        cpu = cpu_seconds(operator.pid)
    finally:
        stop.set()
        operator.terminate()
        try:
            operator.wait(15)
        except subprocess.TimeoutExpired:
            operator.kill()
        kube.kubelet.set_fast_mode(None)
        stop_kube(kube)

    first = [seen[n]["first"] - created[n] for n in created if "first" in seen.get(n, {})]
    done = [seen[n]["Succeeded"] - created[n] for n in created if "Succeeded" in seen.get(n, {})]
    failed = sum(1 for m in seen.values() if "Failed" in m)
    last_done = max(
        (seen[n]["Succeeded"] for n in created if "Succeeded" in seen.get(n, {})), default=ended
    )
    print(
        f"operator scale run: {args.count} VideoTranscodes ({4 * args.count} Jobs), "
        f"cap {args.cap} running Jobs, kubelet fast mode"
    )
    print(f"  created all CRs in {create_seconds:.1f}s")
    print(f"  succeeded {len(done)}/{args.count}, failed {failed}")
    print(f"  first reconcile latency: {percentiles(first)}")
    print(f"  created -> Succeeded:    {percentiles(done)}")
    span = last_done - began
    print(
        f"  throughput: {len(done) / span:.2f} CRs/s ({span:.1f}s from first create to last "
        f"Succeeded)"
    )
    print(
        f"  operator memory: peak RSS {peak_rss / 1024:.0f} MiB, final {final_rss / 1024:.0f} MiB;"
        f" CPU {cpu:.1f}s"
    )
    print(f"  reconcile: {reconcile_summary(metrics)}")
    if len(done) < args.count:
        print(f"  kept the run's files (operator log, cluster logs): {workdir}")
        return 1
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
