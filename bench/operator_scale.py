"""Operator scale run: N VideoTranscodes against the real control plane, pods completed by the
local kubelet's fast mode (no FFmpeg), the operator as a real `kopf run` process.

CRs arrive at a fixed rate (--rate, default 20/s). Reports, each figure next to its target:
  - operator memory: peak and final RSS (sampled every 0.2 s), CPU seconds,
  - created → Jobs created (CR created → its probe Job's ADDED event) p50/p99,
  - throughput to Succeeded (CRs/s, first create to last Succeeded) with a cap that does not bind,
  - reconcile durations from the operator's own histogram (mean, bucket-estimated p95),
  - kube-apiserver requests per CR, from the API server's own `apiserver_request_total`
    (every client's: the controller manager's and the kubelet's pod work are in it; the
    breakdown by resource shows which are the operator's),
  - then the operator is restarted with every CR present: time until each CR was reconciled
    again (steady state), duplicate Jobs created by the new process, its peak RSS,
  - then the anchor, with the operator stopped: the same 4N Jobs POSTed straight to the API
    server at the same rate, released, their pods run by the same fast kubelet. Its throughput
    is the control plane's own ceiling on this machine (no operator can beat it), printed next
    to ours with the ratio, and its requests per CR next to ours.

    nice -n 10 uv run --frozen python bench/operator_scale.py [--count 1000] [--rate 20]
        [--cap 2000] [--timeout 1800] [--no-restart] [--no-anchor] [--json out.json]
        [--operator-env VIDEOFLIX_IO_THREADS=8 ...]

Each CR plans probe + 120p + 360p + thumbnail (a 480p probe result), so N CRs make 4N Jobs.
No database (VIDEOFLIX_DATABASE_URL unset): this measures the cluster side only.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from videoflix_core.transcode import videotranscode_manifest  # noqa: E402

from tests.cluster.fixtures import Kube, start_kube, stop_kube  # noqa: E402
from tests.cluster.kubelet import FastResult  # noqa: E402
from tests.fixtures.procs import free_port  # noqa: E402

# The targets (issue 13), printed next to the figures.
TARGETS = {
    "peak_rss_mib": 200.0,  # at 10,000 CRs
    "jobs_p99_s": 2.0,
    "throughput": 20.0,
    "reconcile_mean_ms": 50.0,
    "restart_s": 60.0,
    "duplicates": 0,
}

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


def pick(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


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


def scrape_operator(port: int, tries: int = 5) -> dict[str, float]:
    for attempt in range(tries):  # one failed scrape must not lose a half-hour run
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
            break
        except OSError:
            if attempt == tries - 1:
                return {}
            time.sleep(1)
    return parse_operator_metrics(text.decode())


def parse_operator_metrics(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(("videoflix_reconcile_duration_seconds", "videoflix_jobs_created")):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def reconcile_figures(metrics: dict[str, float]) -> tuple[int, float, float]:
    """(count, mean ms, bucket-estimated p95 ms) from the operator's reconcile histogram."""
    count = metrics.get("videoflix_reconcile_duration_seconds_count", 0)
    total = metrics.get("videoflix_reconcile_duration_seconds_sum", 0)
    if not count:
        return 0, float("nan"), float("nan")
    buckets = sorted(
        (float(k.split('le="')[1].split('"')[0]), v)
        for k, v in metrics.items()
        if "_bucket" in k and 'le="+Inf"' not in k
    )
    p95 = next((le for le, n in buckets if n >= 0.95 * count), float("inf"))
    return int(count), 1000 * total / count, 1000 * p95


def api_requests(kube: Kube) -> Counter[tuple[str, str, str]]:
    """kube-apiserver's own `apiserver_request_total`, summed by (verb, resource, code)."""
    response = kube.client._http.get("/metrics", headers={"Accept": "text/plain"})
    response.raise_for_status()
    out: Counter[tuple[str, str, str]] = Counter()
    for line in response.text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels_text, value = line[len("apiserver_request_total{") :].rsplit("} ", 1)
        labels = dict(part.split("=", 1) for part in labels_text.split('",') if "=" in part)
        clean = {k: v.strip('"') for k, v in labels.items()}
        key = (clean.get("verb", ""), clean.get("resource", ""), clean.get("code", ""))
        out[key] += int(float(value))
    return out


def all_jobs(kube: Kube, path: str) -> list[dict[str, Any]]:
    """Every Job under `path`, listed in pages."""
    out: list[dict[str, Any]] = []
    token = ""
    while True:
        page = kube.client.get(path, limit=500, **({"continue": token} if token else {}))
        out += page.get("items") or []
        token = page["metadata"].get("continue") or ""
        if not token:
            return out


def job_steps(jobs: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(CR, step, Job name) of each Job."""
    out: list[tuple[str, str, str]] = []
    for job in jobs:
        labels = job["metadata"].get("labels") or {}
        step = labels.get("videoflix.io/rendition") or labels.get("videoflix.io/step", "")
        out.append((labels.get("videoflix.io/transcode", ""), step, job["metadata"]["name"]))
    return out


def duplicates(jobs: list[tuple[str, str, str]]) -> int:
    """Jobs beyond the first for one CR's step (the list holds the first process's Jobs too:
    their TTL is an hour), so a restart that re-creates work shows here."""
    return len(jobs) - len({(cr, step) for cr, step, _ in jobs})


def watch(
    kube: Kube,
    path: str,
    stop: threading.Event,
    on_event: Any,
    selector: str | None = None,
) -> None:
    client = kube.new_client()
    query = f"?labelSelector={selector}" if selector else ""
    version = client.get(path + query)["metadata"]["resourceVersion"]
    while not stop.is_set():
        try:
            for event in client.watch(path + query, version, timeout_seconds=30):
                obj = event.get("object") or {}
                if event.get("type") == "ERROR":
                    version = client.get(path + query)["metadata"]["resourceVersion"]
                    break
                version = obj.get("metadata", {}).get("resourceVersion", version)
                if event.get("type") != "BOOKMARK":
                    on_event(event.get("type"), obj)
                if stop.is_set():
                    break
        except Exception:  # the watch is restarted; the bench must not die on a reconnect
            time.sleep(0.5)
    client.close()


def arrive(
    kube: Kube, path: str, manifests: list[dict[str, Any]], rate: float, created: dict[str, float]
) -> float:
    """POST each manifest at its slot of a steady `rate` (not a burst), from a few threads so a
    slow answer does not push every later arrival back; `created` gets each one's POST time.
    Returns the seconds from the first slot to the last answer."""
    began = time.monotonic()
    local = threading.local()

    def post(i: int) -> None:
        delay = began + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        if not hasattr(local, "client"):
            local.client = kube.new_client()
        created[manifests[i]["metadata"]["name"]] = time.monotonic()
        local.client.create(path, manifests[i])

    with ThreadPoolExecutor(max_workers=16, thread_name_prefix="arrive") as pool:
        list(pool.map(post, range(len(manifests))))  # raises the first failed POST
    return time.monotonic() - began


def bare_jobs(jobs: list[dict[str, Any]], namespace: str) -> list[dict[str, Any]]:
    """Copies of the operator's Jobs for the anchor: same pod template, created released, no
    owner, in the anchor's namespace, without the operator's labels (it must not see them)."""
    out = []
    for job in jobs:
        spec = dict(job["spec"])
        spec["suspend"] = False
        spec.pop("selector", None)  # generated per Job
        template = json.loads(json.dumps(spec["template"]))
        for key in (
            "controller-uid",
            "batch.kubernetes.io/controller-uid",
            "job-name",
            "batch.kubernetes.io/job-name",
        ):
            template["metadata"].get("labels", {}).pop(key, None)
        spec["template"] = template
        out.append(
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": {
                    "name": f"bare-{len(out)}",
                    "namespace": namespace,
                    "labels": {"bench": "anchor"},
                },
                "spec": spec,
            }
        )
    return out


def transcode_namespace(kube: Kube, name: str) -> str:
    """A namespace with what the transcoder pods refer to (service account, S3 secret)."""
    namespace = kube.create_namespace(name)
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
    return namespace


def anchor_phase(
    kube: Kube, jobs: list[dict[str, Any]], rate: float, timeout: float
) -> dict[str, Any]:
    """The control plane alone: the operator's 4N Jobs POSTed straight at the API server at the
    same rate (4 per CR slot, all at once: no probe-first ordering, so an upper bound), the
    kubelet's fast mode running their pods. What any operator on this cluster could reach."""
    namespace = transcode_namespace(kube, "bench-anchor")
    manifests = bare_jobs(jobs, namespace)
    jobs_path = f"/apis/batch/v1/namespaces/{namespace}/jobs"
    done: dict[str, float] = {}
    stop = threading.Event()

    def on_job(_type: str, obj: dict[str, Any]) -> None:
        conditions = (obj.get("status") or {}).get("conditions") or []
        if any(c.get("type") == "Complete" and c.get("status") == "True" for c in conditions):
            done.setdefault(obj["metadata"]["name"], time.monotonic())

    watcher = threading.Thread(target=watch, args=(kube, jobs_path, stop, on_job), daemon=True)
    watcher.start()
    time.sleep(1)
    before = api_requests(kube)
    created: dict[str, float] = {}
    began = time.monotonic()
    arrive(kube, jobs_path, manifests, rate * 4, created)
    deadline = began + timeout
    while len(done) < len(manifests) and time.monotonic() < deadline:
        time.sleep(0.5)
    span = max(done.values(), default=began) - began
    time.sleep(2)
    delta = api_requests(kube) - before
    stop.set()
    took = [done[n] - created[n] for n in created if n in done]
    return {
        "anchor_jobs": len(manifests),
        "anchor_complete": len(done),
        "anchor_throughput": len(done) / 4 / span if span > 0 else float("nan"),
        "anchor_complete_p99_s": pick(took, 0.99),
        "anchor_requests_per_cr": 4 * sum(delta.values()) / max(1, len(manifests)),
    }


class Operator:
    """The operator as `kopf run`, its RSS sampled while it runs."""

    def __init__(self, env: dict[str, str], namespace: str, log_path: Path) -> None:
        self.env, self.namespace, self.log_path = env, namespace, log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.peak_kib = 0
        self._stop = threading.Event()
        self._sampler: threading.Thread | None = None

    def start(self) -> float:
        kopf = str(Path(sys.executable).with_name("kopf"))
        liveness = free_port()
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    kopf,
                    "run",
                    "-m",
                    "videoflix_operator.main",
                    "--namespace",
                    self.namespace,
                    "--standalone",
                    "--liveness",
                    f"http://127.0.0.1:{liveness}/healthz",
                ],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        started = time.monotonic()
        self.peak_kib = 0
        self._stop.clear()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()
        deadline = started + 120
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{liveness}/healthz", timeout=2)
                return started
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"operator exited: see {self.log_path}") from None
                time.sleep(0.2)
        raise RuntimeError("operator not live after 120 s")

    def _sample(self) -> None:
        while not self._stop.is_set() and self.proc is not None:
            self.peak_kib = max(self.peak_kib, rss_kib(self.proc.pid))
            time.sleep(0.2)

    def stop(self) -> None:
        self._stop.set()
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def restart_time(f: dict[str, Any]) -> str:
    """The restart's time to steady state; when it took longer than the bench waited, how far
    it got instead of a bare "nan"."""
    if not math.isnan(f["restart_s"]):
        return f"{f['restart_s']:.1f} s"
    return f"> {f['restart_patience_s']:.0f} s ({f['restart_reconciled']:.0f} reconciled)"


def verdict(value: float, target: float, higher_is_better: bool = False) -> str:
    ok = value >= target if higher_is_better else value <= target
    return "met" if ok else "MISSED"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=20.0, help="CR arrivals per second")
    parser.add_argument(
        "--cap", type=int, default=2000, help="operator's max running Jobs (must not bind)"
    )
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--no-restart", action="store_true", help="skip the restart phase")
    parser.add_argument("--no-anchor", action="store_true", help="skip the bare-Jobs anchor phase")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--operator-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an operator setting for this run (repeatable), e.g. VIDEOFLIX_IO_THREADS=8: the "
        "bench drops the caller's VIDEOFLIX_* variables, so A/B runs of a setting go here",
    )
    args = parser.parse_args()
    # SIGTERM (a backgrounded run ignores SIGINT) still stops the operator and the cluster.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    workdir = Path(tempfile.mkdtemp(prefix="videoflix-bench-"))
    kube = start_kube(workdir)
    namespace = transcode_namespace(kube, "bench-operator")
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
        }
    )
    env.update(item.split("=", 1) for item in args.operator_env)
    operator = Operator(env, namespace, workdir / "operator.log")
    path = f"/apis/videoflix.io/v1alpha1/namespaces/{namespace}/videotranscodes"
    jobs_path = f"/apis/batch/v1/namespaces/{namespace}/jobs"
    names = {f"video-{i}" for i in range(1, args.count + 1)}
    created: dict[str, float] = {}
    first_job: dict[str, float] = {}
    succeeded: dict[str, float] = {}
    failed: set[str] = set()
    stop = threading.Event()

    def on_cr(_type: str, obj: dict[str, Any]) -> None:
        name = obj.get("metadata", {}).get("name")
        phase = (obj.get("status") or {}).get("phase")
        if name in names and phase == "Succeeded":
            succeeded.setdefault(name, time.monotonic())
        elif name in names and phase == "Failed":
            failed.add(name)

    def on_probe_job(kind: str, obj: dict[str, Any]) -> None:
        owner = (obj.get("metadata", {}).get("labels") or {}).get("videoflix.io/transcode")
        if kind == "ADDED" and owner:
            first_job.setdefault(owner, time.monotonic())

    watchers = [
        threading.Thread(target=watch, args=(kube, path, stop, on_cr), daemon=True),
        threading.Thread(
            target=watch,
            args=(kube, jobs_path, stop, on_probe_job, "videoflix.io/step=probe"),
            daemon=True,
        ),
    ]
    figures: dict[str, Any] = {
        "count": args.count,
        "rate": args.rate,
        "cap": args.cap,
        "operator_env": args.operator_env,
    }
    try:
        operator.start()
        for thread in watchers:
            thread.start()
        time.sleep(1)  # the bench's own watches are up
        before = api_requests(kube)
        began = time.monotonic()
        manifests = [
            videotranscode_manifest(i, "media", f"videos/{i}/source/a.mp4", 0, namespace)
            for i in range(1, args.count + 1)
        ]
        create_seconds = arrive(kube, path, manifests, args.rate, created)
        deadline = began + args.timeout
        assert operator.proc is not None
        while time.monotonic() < deadline:
            if len(succeeded) + len(failed) >= args.count or operator.proc.poll() is not None:
                break
            time.sleep(0.5)
        time.sleep(2)  # the last status writes' Events and patches are counted too
        after = api_requests(kube)
        metrics = scrape_operator(metrics_port)
        figures["final_rss_mib"] = rss_kib(operator.proc.pid) / 1024
        figures["peak_rss_mib"] = operator.peak_kib / 1024
        figures["cpu_seconds"] = cpu_seconds(operator.proc.pid)
        figures["reconciles"], figures["reconcile_mean_ms"], figures["reconcile_p95_ms"] = (
            reconcile_figures(metrics)
        )

        # Restarted even when --timeout cut the first phase short: every CR exists, and the
        # unfinished ones are the harder case (their Jobs must be found, not re-created).
        if not args.no_restart:
            operator.stop()
            restart_before = api_requests(kube)
            started = operator.start()
            steady = float("nan")
            patience = max(120.0, args.count / 50)
            count = 0
            while time.monotonic() < started + patience:
                count, _, _ = reconcile_figures(scrape_operator(metrics_port))
                if count >= args.count:
                    steady = time.monotonic() - started
                    break
                time.sleep(0.2)
            figures["restart_patience_s"] = patience
            figures["restart_reconciled"] = count
            time.sleep(2)
            restart_after = api_requests(kube)
            figures["restart_s"] = steady
            figures["restart_peak_rss_mib"] = operator.peak_kib / 1024
            figures["duplicates"] = duplicates(job_steps(all_jobs(kube, jobs_path)))
            figures["restart_jobs_created"] = sum(
                n - restart_before[k]
                for k, n in restart_after.items()
                if k[0] == "POST" and k[1] == "jobs" and k[2] == "201"
            )
            figures["restart_succeeded_before"] = len(succeeded)
            figures["restart_requests"] = sum(restart_after.values()) - sum(restart_before.values())
        if not args.no_anchor:
            operator.stop()  # the anchor has the machine to itself, as the operator had
            ours = [
                j for j in all_jobs(kube, jobs_path) if j["metadata"]["name"].startswith("video-")
            ]
            ours.sort(key=lambda j: j["metadata"]["creationTimestamp"])
            figures.update(anchor_phase(kube, ours[: 4 * args.count], args.rate, args.timeout))
    finally:
        stop.set()
        operator.stop()
        kube.kubelet.set_fast_mode(None)
        stop_kube(kube)

    to_jobs = [first_job[n] - created[n] for n in created if n in first_job]
    done = [succeeded[n] - created[n] for n in created if n in succeeded]
    last_done = max(succeeded.values(), default=time.monotonic())
    span = last_done - began
    delta = after - before
    total_requests = sum(delta.values())
    figures.update(
        {
            "created_seconds": create_seconds,
            "succeeded": len(done),
            "failed": len(failed),
            "jobs_p50_s": pick(to_jobs, 0.5),
            "jobs_p99_s": pick(to_jobs, 0.99),
            "succeeded_p50_s": pick(done, 0.5),
            "succeeded_p99_s": pick(done, 0.99),
            "throughput": len(done) / span if span > 0 else float("nan"),
            "requests_per_cr": total_requests / args.count,
        }
    )
    by_resource: Counter[str] = Counter()
    for (verb, resource, _code), n in delta.items():
        by_resource[f"{verb} {resource}"] += n
    figures["requests_by_verb_resource"] = dict(by_resource.most_common())

    f = figures
    print(
        f"operator scale run: {args.count} VideoTranscodes ({4 * args.count} Jobs) arriving at "
        f"{args.rate:g}/s (all created in {create_seconds:.1f}s), cap {args.cap} running Jobs, "
        f"kubelet fast mode, load average {os.getloadavg()[0]:.1f}"
        + (f", operator settings {' '.join(args.operator_env)}" if args.operator_env else "")
    )
    print(f"  succeeded {f['succeeded']}/{args.count}, failed {f['failed']}")
    rows = [
        (
            "peak RSS",
            f"{f['peak_rss_mib']:.0f} MiB",
            "<= 200 MiB at 10,000 CRs",
            verdict(f["peak_rss_mib"], TARGETS["peak_rss_mib"]),
        ),
        ("final RSS", f"{f['final_rss_mib']:.0f} MiB", "", ""),
        ("created -> Jobs created p50", f"{f['jobs_p50_s']:.2f} s", "", ""),
        (
            "created -> Jobs created p99",
            f"{f['jobs_p99_s']:.2f} s",
            "<= 2 s",
            verdict(f["jobs_p99_s"], TARGETS["jobs_p99_s"]),
        ),
        (
            "created -> Succeeded p50/p99",
            f"{f['succeeded_p50_s']:.2f} / {f['succeeded_p99_s']:.2f} s",
            "",
            "",
        ),
        (
            "throughput to Succeeded",
            f"{f['throughput']:.1f} CRs/s",
            ">= 20 CRs/s",
            verdict(f["throughput"], TARGETS["throughput"], higher_is_better=True),
        ),
        (
            "reconcile mean",
            f"{f['reconcile_mean_ms']:.1f} ms",
            "<= 50 ms",
            verdict(f["reconcile_mean_ms"], TARGETS["reconcile_mean_ms"]),
        ),
        ("reconcile p95 (bucket)", f"<= {f['reconcile_p95_ms']:.0f} ms", "", ""),
        ("reconciles", f"{f['reconciles']} ({f['reconciles'] / args.count:.1f} per CR)", "", ""),
        ("operator CPU", f"{f['cpu_seconds']:.1f} s", "", ""),
        ("kube-apiserver requests per CR", f"{f['requests_per_cr']:.1f} (all clients)", "", ""),
    ]
    if "anchor_throughput" in f:
        rows += [
            (
                "anchor: bare Jobs to Complete",
                f"{f['anchor_throughput']:.1f} CRs/s ({f['anchor_complete']}/{f['anchor_jobs']})",
                "same Jobs, no operator",
                "",
            ),
            (
                "ours / anchor throughput",
                f"{f['throughput'] / f['anchor_throughput']:.2f}x",
                "the cluster's ceiling = 1.0x",
                "",
            ),
            (
                "anchor: requests per CR",
                f"{f['anchor_requests_per_cr']:.1f} (all clients)",
                f"ours {f['requests_per_cr']:.1f}",
                "",
            ),
        ]
    if "restart_s" in f:
        rows += [
            (
                "restart: back to steady state",
                restart_time(f),
                "<= 60 s",
                verdict(f["restart_s"], TARGETS["restart_s"]),
            ),
            (
                "restart: duplicate Jobs",
                str(f["duplicates"]),
                "0",
                verdict(f["duplicates"], TARGETS["duplicates"]),
            ),
            (
                "restart: peak RSS",
                f"{f['restart_peak_rss_mib']:.0f} MiB",
                "<= 200 MiB",
                verdict(f["restart_peak_rss_mib"], TARGETS["peak_rss_mib"]),
            ),
            ("restart: API requests", str(f["restart_requests"]), "", ""),
            (
                "restart: Jobs created (new steps)",
                f"{f['restart_jobs_created']} ({f['restart_succeeded_before']} CRs had finished)",
                "",
                "",
            ),
        ]
    for label, value, target, result in rows:
        print(f"  {label:<34} {value:<28} {target:<26} {result}")
    print("  API requests by verb and resource (all clients):")
    for key, n in list(by_resource.most_common())[:12]:
        print(f"    {key:<40} {n:>8}  ({n / args.count:.2f} per CR)")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    if len(done) < args.count:
        print(f"  kept the run's files (operator log, cluster logs): {workdir}")
        return 1
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
