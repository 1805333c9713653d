"""Transcode benchmark: the full ladder four ways, on generated sources of different kinds.

  (a) one process per rendition (what per-rendition Jobs do),
  (b) our single-pass ladder (`python -m videoflix_transcoder ladder`),
  (c) a plain hand-written single-pass ffmpeg command (the reference),
  (d) hybrid: 120p alone (playable early), then one ladder for the other rungs.

Sources (`--sources`, default all): `grain` 1080p30 H.264 with temporal grain (~107 Mbit/s),
`phone` 1080p30 H.264 at 17 Mbit/s (what a phone records) and `hdr` 3840x2160 10-bit HEVC PQ.
For each it prints CPU-seconds, wall-seconds, realtime factor and bytes per rung, the ratios a/c,
b/c and d/c, time to the first playable rung (120p alone), and SSIM/PSNR of each rung of (b)
against the source at the rung's size. For the HDR source the yardstick is a reference tone
mapping (a separate plain `zscale…tonemap` command, lossless), and the bench prints the SSIM of
our tone-mapped 720p against it.

    uv run python bench/transcode.py [--seconds 60] [--sources grain,phone,hdr]
                                     [--preset veryfast] [--cpu-limit 2]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

# (name, width, height) of a 16:9 source: every bench source is landscape 16:9.
LADDER = [("120p", 214, 120), ("360p", 640, 360), ("720p", 1280, 720), ("1080p", 1920, 1080)]
# The reference tone mapping: linear light, BT.709 primaries, Hable curve, BT.709 transfer.
TONEMAP = ("zscale=t=linear:npl=100,format=gbrpf32le,zscale=p=bt709,"
           "tonemap=tonemap=hable:desat=0,zscale=t=bt709:m=bt709:r=tv,format=yuv420p")


@dataclass
class Measured:
    wall: float = 0.0
    cpu: float = 0.0
    bytes: dict[str, int] = field(default_factory=dict)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """Wall and CPU seconds of a command and all its (waited-for) descendants."""
    cpu0, wall0 = children_cpu(), time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env)
    wall, cpu = time.monotonic() - wall0, children_cpu() - cpu0
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(argv)}\n{proc.stderr[-2000:]}")
    return wall, cpu, proc.stdout


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def audio(seconds: int) -> list[str]:
    return ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}"]


def make_grain(path: Path, seconds: int) -> None:
    # Moving test pattern plus temporal grain: a high-bitrate source, not a trivially
    # compressible one (pure testsrc2 would flatter every encoder); superfast keeps the
    # deblocking filter on, like camera and phone encoders.
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=size=1920x1080:rate=30:duration={seconds}",
           *audio(seconds), "-vf", "noise=alls=5:allf=t", "-c:v", "libx264", "-preset",
           "superfast", "-crf", "18", "-pix_fmt", "yuv420p", "-c:a", "aac", "-ac", "2",
           "-b:a", "192k", str(path))


def make_phone(path: Path, seconds: int) -> None:
    # Smooth zooming fractal detail plus light grain, at a phone's 17 Mbit/s constant rate.
    ffmpeg("-f", "lavfi", "-i", f"mandelbrot=size=960x540:rate=30,trim=duration={seconds}",
           *audio(seconds), "-vf", "scale=1920:1080:flags=bicubic,noise=alls=3:allf=t",
           "-c:v", "libx264", "-preset", "veryfast", "-profile:v", "high", "-b:v", "17M",
           "-maxrate", "17M", "-bufsize", "34M", "-pix_fmt", "yuv420p", "-c:a", "aac",
           "-b:a", "192k", "-shortest", str(path))


def make_hdr(path: Path, seconds: int) -> None:
    # HDR10 as phones and cameras write it: 4K 10-bit HEVC, BT.2020 primaries, PQ transfer.
    # Natural-ish content: on testsrc2's flat bars SSIM measures dither noise, and two correct
    # tone mappings (resize before or after) scored only 0.85 against each other (0.99 here).
    ffmpeg("-f", "lavfi", "-i", f"mandelbrot=size=960x540:rate=30,trim=duration={seconds}",
           *audio(seconds), "-vf",
           "scale=3840:2160:flags=bicubic,noise=alls=3:allf=t,format=yuv420p10le",
           "-c:v", "libx265", "-preset",
           "ultrafast", "-x265-params",
           "log-level=error:colorprim=bt2020:transfer=smpte2084:colormatrix=bt2020nc",
           "-color_primaries", "bt2020", "-color_trc", "smpte2084", "-colorspace", "bt2020nc",
           "-tag:v", "hvc1", "-c:a", "aac", "-b:a", "192k", "-shortest", str(path))


SOURCES = {
    "grain": ("1080p30 H.264 with grain", make_grain),
    "phone": ("1080p30 H.264 17 Mbit/s", make_phone),
    "hdr": ("2160p30 10-bit HEVC PQ", make_hdr),
}


def transcoder(*args: str) -> list[str]:
    return [sys.executable, "-m", "videoflix_transcoder", *args]


def result_of(stdout: str) -> dict[str, object]:
    return json.loads(stdout.strip().splitlines()[-1])["result"]  # type: ignore[no-any-return]


def rung_bytes(result: dict[str, object]) -> dict[str, int]:
    return {r["name"]: r["bytes"] for r in result["renditions"]}  # type: ignore[attr-defined, index]


def reference_argv(source: Path, out: Path, preset: str, hdr: bool) -> list[str]:
    """What a person would write by hand for the same ladder and settings."""
    maxrate = {120: 250, 360: 900, 720: 3000, 1080: 6000}
    audio = {120: 64, 360: 96, 720: 128, 1080: 128}
    head = f"[0:v]{TONEMAP},split=4" if hdr else "[0:v]split=4"
    graph = head + "[a][b][c][d];" + ";".join(
        f"[{x}]scale={w}:{h}[o{h}]" for x, (_, w, h) in zip("abcd", LADDER, strict=True)
    )
    argv = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", str(source),
            "-filter_complex", graph]
    for name, _, h in LADDER:
        argv += ["-map", f"[o{h}]", "-map", "0:a", "-c:v", "libx264", "-preset", preset,
                 "-crf", "23", "-maxrate", f"{maxrate[h]}k", "-bufsize", f"{2 * maxrate[h]}k",
                 "-g", "60", "-keyint_min", "60", "-sc_threshold", "0",
                 "-c:a", "aac", "-b:a", f"{audio[h]}k", "-ac", "2",
                 "-movflags", "+faststart", str(out / f"{name}.mp4")]
    return argv


def tonemap_reference(source: Path, out: Path, width: int, height: int) -> Path:
    """The reference tone mapping of the HDR source at one size, lossless (x264 -qp 0)."""
    ffmpeg("-i", str(source), "-vf", f"{TONEMAP},scale={width}:{height}:flags=bicubic",
           "-an", "-c:v", "libx264", "-preset", "ultrafast", "-qp", "0", str(out))
    return out


def quality(rung: Path, source: Path, width: int, height: int) -> tuple[float, float]:
    """SSIM and PSNR (luma+chroma average) of a rung against the source scaled to its size."""
    graph = (
        "[0:v]setpts=PTS-STARTPTS,split[d1][d2];"
        f"[1:v]setpts=PTS-STARTPTS,scale={width}:{height}:flags=bicubic,split[r1][r2];"
        "[d1][r1]ssim;[d2][r2]psnr"
    )
    proc = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostats", "-i", str(rung), "-i", str(source),
         "-filter_complex", graph, "-f", "null", "-"],
        capture_output=True, text=True, check=True,
    )
    ssim = re.search(r"SSIM .*All:([\d.]+)", proc.stderr)
    psnr = re.search(r"PSNR .*average:([\d.inf]+)", proc.stderr)
    assert ssim and psnr, proc.stderr[-1000:]
    return float(ssim.group(1)), float(psnr.group(1))


@dataclass
class Run:
    """One source's four ways, for the closing table."""

    source: str
    a: Measured
    b: Measured
    c: Measured
    d: Measured
    first_playable: float
    tonemap_ssim: float | None = None


def bench_source(
    key: str, args: argparse.Namespace, env: dict[str, str], work: Path
) -> Run:
    label, make = SOURCES[key]
    work.mkdir()
    source = work / "source.mp4"
    print(f"== {key}: generating a {args.seconds} s {label} source ...", flush=True)
    make(source, args.seconds)
    src_mb = source.stat().st_size / 1e6
    print(f"source: {src_mb:.1f} MB ({src_mb * 8 / args.seconds:.1f} Mbit/s)\n", flush=True)

    a = Measured()
    first_playable = a_first_wall = a_first_cpu = 0.0
    for name, width, height in LADDER:
        wall, cpu, out = timed(transcoder(
            "rendition", "--source", str(source), "--dest", str(work / "a"), "--name", name,
            "--width", str(width), "--height", str(height), "--preset", args.preset), env)
        a.wall += wall
        a.cpu += cpu
        a.bytes.update(rung_bytes(result_of(out)))
        if name == "120p":
            first_playable, a_first_wall, a_first_cpu = wall, wall, cpu
        print(f"(a) {name}: {wall:.1f} s wall, {cpu:.1f} s CPU", flush=True)

    b = Measured()
    rungs = [x for name, w, h in LADDER for x in ("--rung", f"{name}:{w}x{h}")]
    b.wall, b.cpu, out = timed(transcoder(
        "ladder", "--source", str(source), "--dest", str(work / "b"), *rungs,
        "--preset", args.preset), env)
    ladder_result = result_of(out)
    b.bytes = rung_bytes(ladder_result)
    print(f"(b) ladder: {b.wall:.1f} s wall, {b.cpu:.1f} s CPU", flush=True)

    d = Measured()
    d.wall, d.cpu = a_first_wall, a_first_cpu
    d.bytes = {"120p": a.bytes["120p"]}
    rest = [x for name, w, h in LADDER[1:] for x in ("--rung", f"{name}:{w}x{h}")]
    wall, cpu, out = timed(transcoder(
        "ladder", "--source", str(source), "--dest", str(work / "d"), *rest,
        "--preset", args.preset), env)
    d.wall += wall
    d.cpu += cpu
    d.bytes.update(rung_bytes(result_of(out)))
    print(f"(d) 120p + ladder of the rest: {d.wall:.1f} s wall, {d.cpu:.1f} s CPU", flush=True)

    c = Measured()
    (work / "c").mkdir()
    c.wall, c.cpu, _ = timed(reference_argv(source, work / "c", args.preset, key == "hdr"))
    c.bytes = {name: (work / "c" / f"{name}.mp4").stat().st_size for name, _, _ in LADDER}
    print(f"(c) reference: {c.wall:.1f} s wall, {c.cpu:.1f} s CPU\n", flush=True)

    print(f"{'way':<28}{'CPU s':>8}{'wall s':>8}{'x realtime':>12}  bytes per rung")
    for way, m in (("(a) process per rendition", a), ("(b) our ladder", b),
                   ("(c) hand-written ffmpeg", c), ("(d) 120p alone + ladder", d)):
        sizes = " ".join(f"{n}={m.bytes[n] / 1e6:.2f}MB" for n, _, _ in LADDER)
        print(f"{way:<28}{m.cpu:>8.1f}{m.wall:>8.1f}{args.seconds / m.wall:>12.2f}  {sizes}")
    print(f"\nCPU  a/c = {a.cpu / c.cpu:.2f}   b/c = {b.cpu / c.cpu:.2f}"
          f"   d/c = {d.cpu / c.cpu:.2f}")
    print(f"wall a/c = {a.wall / c.wall:.2f}   b/c = {b.wall / c.wall:.2f}"
          f"   d/c = {d.wall / c.wall:.2f}")
    print(f"time to first playable rung (120p alone, probe+encode+publish): "
          f"{first_playable:.1f} s for a {args.seconds} s source")
    run = Run(key, a, b, c, d, first_playable)

    renditions = {r["name"]: r for r in ladder_result["renditions"]}  # type: ignore[attr-defined]
    if key == "hdr":
        # SSIM against the source itself would measure the missing tone mapping, not the
        # encode: the yardstick is what a plain zscale+tonemap command makes of it.
        reference = tonemap_reference(source, work / "tonemapped-720p.mkv", 1280, 720)
        ssim, psnr = quality(Path(renditions["720p"]["file"]), reference, 1280, 720)
        run.tonemap_ssim = ssim
        print(f"tone-mapped 720p of (b) against the reference tone mapping: "
              f"SSIM {ssim:.4f}, PSNR {psnr:.2f} dB", flush=True)
    elif not args.skip_quality:
        print(f"\n{'rung (b)':<10}{'size':>11}{'kbit/s':>9}{'SSIM':>9}{'PSNR dB':>9}")
        for r in renditions.values():
            ssim, psnr = quality(Path(r["file"]), source, r["width"], r["height"])
            print(f"{r['name']:<10}{r['width']:>6}x{r['height']:<4}"
                  f"{r['bitrate'] / 1000:>9.0f}{ssim:>9.4f}{psnr:>9.2f}", flush=True)
    print(flush=True)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60, help="source length (default 60)")
    parser.add_argument("--sources", default=",".join(SOURCES),
                        help=f"comma-separated, of {', '.join(SOURCES)} (default all)")
    parser.add_argument("--preset", default="veryfast")
    parser.add_argument("--cpu-limit", help="VIDEOFLIX_CPU_LIMIT for (a) and (b)")
    parser.add_argument("--skip-quality", action="store_true", help="no SSIM/PSNR pass")
    args = parser.parse_args()
    keys = [k.strip() for k in args.sources.split(",") if k.strip()]
    unknown = [k for k in keys if k not in SOURCES]
    if unknown or not keys:
        parser.error(f"unknown --sources {unknown}; choose from {', '.join(SOURCES)}")

    env = {k: v for k, v in os.environ.items() if k != "VIDEOFLIX_CPU_LIMIT"}
    env["VIDEOFLIX_RESULT_FILE"] = os.devnull
    if args.cpu_limit:
        env["VIDEOFLIX_CPU_LIMIT"] = args.cpu_limit

    with tempfile.TemporaryDirectory(prefix="videoflix-bench-") as tmp:
        runs = [bench_source(key, args, env, Path(tmp) / key) for key in keys]

    print(f"{'source':<8}{'CPU a/c':>9}{'b/c':>7}{'d/c':>7}{'wall a/c':>10}{'b/c':>7}{'d/c':>7}"
          f"{'b CPU s':>9}{'first s':>9}{'tonemap SSIM':>14}")
    for r in runs:
        ssim = f"{r.tonemap_ssim:.4f}" if r.tonemap_ssim is not None else "-"
        print(f"{r.source:<8}{r.a.cpu / r.c.cpu:>9.2f}{r.b.cpu / r.c.cpu:>7.2f}"
              f"{r.d.cpu / r.c.cpu:>7.2f}{r.a.wall / r.c.wall:>10.2f}{r.b.wall / r.c.wall:>7.2f}"
              f"{r.d.wall / r.c.wall:>7.2f}{r.b.cpu:>9.1f}{r.first_playable:>9.1f}{ssim:>14}")


if __name__ == "__main__":
    main()
