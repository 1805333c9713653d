"""Chunked rendition bench (issue 14): unchunked vs chunked ladders on one phone-like source.

A 120 s 1080p30 H.264 source at a phone's 17 Mbit/s (bench/transcode.py's `phone`), the
SinglePass ladder 120p/360p/720p/1080p. Every encode runs with VIDEOFLIX_CPU_LIMIT=1, so one
process is one "slot" (a pod with one CPU):

  unchunked   `ladder`, one pod: the anchor of the same run;
  chunked L   for L in --lengths (default 10, 20, 30 s): the `chunk` indexes and the one
              `audio` step on 2 parallel pods (two processes at a time), then `assemble` of
              every rung (also two at a time).

Printed per chunk length and rung: CPU ratio chunked/unchunked (the ladder is encoded from one
decode, so CPU is per ladder; assembly included), bytes ratio, SSIM and PSNR against the source
at the rung's size (and the change against unchunked), frames (dropped / duplicated against
the unchunked encode), timestamp gaps at joins, and the audio/video offset at every join
(chunked minus unchunked, video and audio alike). Then wall time with 2 parallel pods against
one pod, and list-scheduling simulations from the measured per-chunk times for 1, 8, 32 and
128 slots (assembly included) for the bench source and for a 10-minute source (per-chunk
time fitted as a + b * seconds over every measured chunk, audio and assembly scaled by
duration), as speedups against one unchunked pod (the anchor's CPU seconds: one thread),
with the time to Playable (the lowest rung assembled) of the 10-minute source.
Measurements are also written to WORK/measured.json after each chunk length.

    nice -n 10 uv run python bench/chunked.py [--seconds 120] [--lengths 10,20,30]
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transcode import LADDER, make_phone  # bench/ is the script's folder
from videoflix_core.chunks import plan_chunks, starts_arg

SLOTS = (1, 8, 32, 128)
LONG_SECONDS = 600
AUDIO_KBPS = {"120p": 64, "360p": 96, "720p": 128, "1080p": 128}  # the transcoder's defaults


@dataclass
class Task:
    name: str
    argv: list[str]
    wall: float = 0.0
    cpu: float = 0.0
    result: dict[str, Any] = field(default_factory=dict)


def transcoder(*args: str) -> list[str]:
    return [sys.executable, "-m", "videoflix_transcoder", *args]


def run_pool(tasks: list[Task], workers: int, env: dict[str, str], scratch: Path) -> float:
    """Run tasks `workers` at a time, in order; each task's own CPU from wait4. Wall of all."""
    pending = list(tasks)
    # The Popen objects stay referenced: subprocess reaps dropped ones, stealing wait4's child.
    running: dict[int, tuple[Task, float, Path, subprocess.Popen[bytes]]] = {}
    started = time.monotonic()
    while pending or running:
        while pending and len(running) < workers:
            task = pending.pop(0)
            out = scratch / f"{len(running)}-{time.monotonic_ns()}.out"
            with out.open("w") as stdout:
                proc = subprocess.Popen(task.argv, stdout=stdout, stderr=subprocess.STDOUT,
                                        env=env, stdin=subprocess.DEVNULL)
            running[proc.pid] = (task, time.monotonic(), out, proc)
        pid, status, usage = os.wait4(-1, 0)
        if pid not in running:
            continue
        task, t0, out, proc = running.pop(pid)
        proc.returncode = os.waitstatus_to_exitcode(status)
        task.wall = time.monotonic() - t0
        task.cpu = usage.ru_utime + usage.ru_stime
        text = out.read_text()
        if proc.returncode != 0:
            sys.exit(f"{task.name} failed:\n{text[-3000:]}")
        task.result = json.loads(text.strip().splitlines()[-1])["result"]
    return time.monotonic() - started


def qualities(
    source: Path, files: list[Path], width: int, height: int
) -> list[tuple[float, float]]:
    """SSIM and PSNR of each file against the source scaled to its size: one decode and one
    scale of the 1080p source for all of them (bench/transcode.py's `quality`, batched)."""
    n = len(files)
    parts = [f"[0:v]setpts=PTS-STARTPTS,scale={width}:{height}:flags=bicubic,split={2 * n}"
             + "".join(f"[r{i}]" for i in range(2 * n))]
    for i in range(n):
        parts.append(f"[{i + 1}:v]setpts=PTS-STARTPTS,split[d{2 * i}][d{2 * i + 1}]")
        parts.append(f"[d{2 * i}][r{2 * i}]ssim[s{i}]")
        parts.append(f"[d{2 * i + 1}][r{2 * i + 1}]psnr[p{i}]")
    argv = ["ffmpeg", "-hide_banner", "-nostats", "-i", str(source)]
    for file in files:
        argv += ["-i", str(file)]
    argv += ["-filter_complex", ";".join(parts)]
    for i in range(n):
        argv += ["-map", f"[s{i}]", "-f", "null", "-", "-map", f"[p{i}]", "-f", "null", "-"]
    proc = subprocess.run(argv, capture_output=True, text=True, check=True)
    # One summary line per filter instance, tagged with its instance name, in graph order.
    ssim = dict(re.findall(r"\[Parsed_ssim_(\d+) @[^\]]*\] SSIM .*All:([\d.]+)", proc.stderr))
    psnr = dict(re.findall(r"\[Parsed_psnr_(\d+) @[^\]]*\] PSNR .*average:([\d.inf]+)",
                           proc.stderr))
    assert len(ssim) == n and len(psnr) == n, proc.stderr[-2000:]
    s_vals = [float(v) for _, v in sorted(ssim.items(), key=lambda kv: int(kv[0]))]
    p_vals = [float(v) for _, v in sorted(psnr.items(), key=lambda kv: int(kv[0]))]
    return list(zip(s_vals, p_vals, strict=True))


def packets(path: Path, stream: str) -> list[float]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", stream, "-show_entries",
         "packet=pts_time", "-of", "csv=p=0", str(path)],
        capture_output=True, text=True, check=True,
    ).stdout
    return sorted(float(line) for line in out.split() if line.strip())


@dataclass
class Timing:
    frames: int
    dropped: int
    duplicated: int
    join_gaps: int
    av_offset_ms: float  # worst |video shift - audio shift| over the joins


def timing(chunked: Path, unchunked: Path, joins: list[float]) -> Timing:
    """Frames and timestamps of a chunked rung against the unchunked encode of the same rung."""
    video, ref = packets(chunked, "v:0"), packets(unchunked, "v:0")
    audio, ref_audio = packets(chunked, "a:0"), packets(unchunked, "a:0")
    dropped = len({round(t, 4) for t in ref} - {round(t, 4) for t in video})
    duplicated = len(video) - len({round(t, 4) for t in video})
    gaps, worst = 0, 0.0
    step = min((b - a for a, b in itertools.pairwise(ref)), default=0.0)
    for join in joins:
        i = next(k for k, t in enumerate(video) if t >= join - 1e-6)
        j = next(k for k, t in enumerate(ref) if t >= join - 1e-6)
        if i == 0 or abs((video[i] - video[i - 1]) - (ref[j] - ref[j - 1])) > step / 2:
            gaps += 1
        a = next((k for k, t in enumerate(audio) if t >= join), len(audio) - 1)
        b = next((k for k, t in enumerate(ref_audio) if t >= join), len(ref_audio) - 1)
        worst = max(worst, abs((video[i] - ref[j]) - (audio[a] - ref_audio[b])) * 1000)
    return Timing(len(video), dropped, duplicated, gaps, worst)


def list_schedule(durations: list[float], slots: int) -> float:
    """Greedy list scheduling in the given order: each task to the slot that frees first."""
    free = [0.0] * min(slots, max(1, len(durations)))
    heapq.heapify(free)
    end = 0.0
    for d in durations:
        start = heapq.heappop(free)
        end = max(end, start + d)
        heapq.heappush(free, start + d)
    return end


def simulate(chunks: list[float], audio: float, assemble: dict[str, float],
             slots: int) -> tuple[float, float]:
    """(all rungs assembled, lowest rung assembled) with `slots` one-CPU pods.

    The audio step and the chunk indexes are one list (audio first: it is one long task);
    every rung's assembly starts when all indexes are done (SinglePass: each index encodes
    every rung), the lowest rung's first.
    """
    encoded = list_schedule([audio, *chunks], slots)
    order = sorted(assemble, key=lambda n: int(n.rstrip("p")))
    done = encoded + list_schedule([assemble[n] for n in order], slots)
    return done, encoded + assemble[order[0]]


def fit(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least squares a + b*x."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points) or 1.0
    b = sum((x - mx) * (y - my) for x, y in points) / sxx
    return my - b * mx, b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=120)
    parser.add_argument("--lengths", default="10,20,30")
    parser.add_argument("--work", help="keep files here (default: a temp dir)")
    parser.add_argument("--rungs", default=",".join(name for name, _, _ in LADDER),
                        help="subset of the ladder (the machine is shared: 1080p is half of it)")
    args = parser.parse_args()
    lengths = [int(x) for x in args.lengths.split(",")]
    ladder = [rung for rung in LADDER if rung[0] in args.rungs.split(",")]
    env = {**os.environ, "VIDEOFLIX_CPU_LIMIT": "1", "VIDEOFLIX_RESULT_FILE": os.devnull}
    with tempfile.TemporaryDirectory(prefix="chunked-bench-") as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        logs = work / "logs"
        logs.mkdir(exist_ok=True)
        source = work / "source.mp4"
        print(f"generating a {args.seconds} s 1080p30 phone-like source ...", flush=True)
        if not source.exists():
            make_phone(source, args.seconds)
        rung_args = [a for name, w, h in ladder for a in ("--rung", f"{name}:{w}x{h}")]

        anchor = Task("unchunked", transcoder(
            "ladder", "--source", str(source), "--dest", str(work / "unchunked"), *rung_args))
        anchor_wall = run_pool([anchor], 1, env, logs)
        print(f"unchunked ladder, 1 pod: CPU {anchor.cpu:.1f} s, wall {anchor_wall:.1f} s",
              flush=True)
        unchunked = {r["name"]: r for r in anchor.result["renditions"]}
        duration = float(unchunked["120p"]["durationSeconds"])

        rows: list[str] = []
        sims: list[str] = []
        points: list[tuple[float, float]] = []
        measured: dict[int, dict[str, Any]] = {}
        outputs: dict[int, dict[str, dict[str, Any]]] = {}
        timings: dict[int, dict[str, Timing]] = {}
        cpus: dict[int, float] = {}
        for length in lengths:
            plan = plan_chunks(duration, length)
            starts = starts_arg(plan)
            dest = work / f"chunked-{length}"
            chunk_tasks = [
                Task(f"chunk {c.index}", transcoder(
                    "chunk", "--source", str(source), "--dest", str(dest), "--starts", starts,
                    "--index", str(c.index), *rung_args))
                for c in plan
            ]
            audio = Task("audio", transcoder(
                "audio", "--source", str(source), "--dest", str(dest),
                *(a for k in sorted(set(AUDIO_KBPS.values())) for a in ("--bitrate", str(k)))))
            encode_wall = run_pool([audio, *chunk_tasks], 2, env, logs)
            assembles = [
                Task(name, transcoder(
                    "assemble", "--dest", str(dest), "--name", name, "--starts", starts,
                    "--audio-bitrate", str(AUDIO_KBPS[name])))
                for name, _, _ in ladder
            ]
            assemble_wall = run_pool(assembles, 2, env, logs)
            cpu = sum(t.cpu for t in [audio, *chunk_tasks, *assembles])
            for c, t in zip(plan, chunk_tasks, strict=True):
                points.append((c.end - c.start, t.cpu))
            measured[length] = {
                "chunks": [t.cpu for t in chunk_tasks], "audio": audio.cpu,
                "assemble": {t.name: t.cpu for t in assembles},
                "wall2": encode_wall + assemble_wall,
            }
            print(f"chunked {length} s: {len(plan)} indexes, CPU {cpu:.1f} s, wall on 2 pods "
                  f"{encode_wall + assemble_wall:.1f} s (assembly {assemble_wall:.1f} s)",
                  flush=True)
            joins = [c.start for c in plan[1:]]
            cpus[length] = cpu
            outputs[length] = {t.name: t.result["renditions"][0] for t in assembles}
            timings[length] = {
                name: timing(Path(r["file"]), Path(unchunked[name]["file"]), joins)
                for name, r in outputs[length].items()
            }
            (work / "measured.json").write_text(json.dumps({
                "anchor": {"cpu": anchor.cpu, "wall": anchor_wall}, "measured": measured,
                "points": points, "outputs": outputs,
                "timings": {k: {n: vars(t) for n, t in v.items()} for k, v in timings.items()},
            }, indent=1))

        # Quality last, one pass per rung over the unchunked and every chunked encode.
        print("measuring SSIM/PSNR ...", flush=True)
        for name, _, _ in ladder:
            ref = unchunked[name]
            ref_file = Path(ref["file"])
            files = [ref_file, *(Path(outputs[length][name]["file"]) for length in lengths)]
            scores = qualities(source, files, ref["width"], ref["height"])
            (ref_ssim, ref_psnr), rest = scores[0], scores[1:]
            ref_frames = len(packets(ref_file, "v:0"))
            rows.append(f"| unchunked | {name} | 1 | 1 | {ref_ssim:.4f} | {ref_psnr:.2f} | "
                        f"{ref_frames} | - | - | - |")
            for length, (ssim, psnr) in zip(lengths, rest, strict=True):
                rendition, t = outputs[length][name], timings[length][name]
                same_size = (rendition["width"], rendition["height"]) == (ref["width"],
                                                                        ref["height"])
                rows.append(
                    f"| {length} s | {name} | {cpus[length] / anchor.cpu:.3f} | "
                    f"{rendition['bytes'] / ref['bytes']:.4f} | {ssim:.4f} "
                    f"({ssim - ref_ssim:+.4f}) | {psnr:.2f} ({psnr - ref_psnr:+.2f}) | "
                    f"{t.frames}/{ref_frames}"
                    f" | {t.dropped}/{t.duplicated}/{t.join_gaps} | {t.av_offset_ms:.2f} | "
                    f"{rendition['durationSeconds'] - ref['durationSeconds']:+.3f}"
                    f"{'' if same_size else ' size differs'} |"
                )
            print("\n".join(rows[-1 - len(lengths):]), flush=True)

        a, b = fit(points)
        print("\n## Chunked vs unchunked (CPU per ladder, 1-CPU pods)\n")
        print("| chunk | rung | CPU ratio | bytes ratio | SSIM (Δ) | PSNR dB (Δ) | frames "
              "chunked/unchunked | dropped/dup/join gaps | A/V offset at joins ms | "
              "Δduration s |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        print("\n".join(rows))
        print(f"\nUnchunked: 1 pod CPU {anchor.cpu:.1f} s, wall {anchor_wall:.1f} s. "
              f"Per-index cost fitted over {len(points)} chunks: {a:.2f} s + {b:.3f} s per "
              "content second (CPU).")
        print("\n## Wall time, 2 parallel pods (measured) and simulated slots\n")
        print("| chunk | 2 pods measured wall s | speedup vs 1 pod | "
              + " | ".join(f"{m} slots speedup ({args.seconds} s)" for m in SLOTS)
              + " | " + " | ".join(f"{m} slots speedup (10 min)" for m in SLOTS)
              + " | " + " | ".join(f"Playable 10 min, {m} slots s" for m in SLOTS) + " |")
        print("| --- | --- | --- | " + " | ".join(["---"] * len(SLOTS) * 3) + " |")
        one_pod_long = anchor.cpu * LONG_SECONDS / duration
        for length in lengths:
            m = measured[length]
            # Against one unchunked pod (the anchor's CPU: one thread, so its uncontended wall).
            short = [anchor.cpu / simulate(m["chunks"], m["audio"], m["assemble"], s)[0]
                     for s in SLOTS]
            long_plan = plan_chunks(LONG_SECONDS, length)
            long_chunks = [a + b * (c.end - c.start) for c in long_plan]
            scale = LONG_SECONDS / duration
            long_audio = m["audio"] * scale
            long_assemble = {n: s * scale for n, s in m["assemble"].items()}
            long = [simulate(long_chunks, long_audio, long_assemble, s) for s in SLOTS]
            sims.append(
                f"| {length} s | {m['wall2']:.1f} | {anchor_wall / m['wall2']:.2f} | "
                + " | ".join(f"{x:.2f}" for x in short) + " | "
                + " | ".join(f"{one_pod_long / done:.2f}" for done, _ in long) + " | "
                + " | ".join(f"{playable:.0f}" for _, playable in long) + " |"
            )
        print("\n".join(sims))
        print(f"\n10-minute source, unchunked on 1 pod (scaled from the anchor): "
              f"{one_pod_long:.0f} s to Playable and to done (SinglePass: all rungs at once).")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
