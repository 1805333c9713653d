"""The real-world corpus: what users actually upload, generated deterministically with FFmpeg.

Every entry is a recipe (FFmpeg command lines and a few byte-level steps) plus the outcome the
pipeline must reach for it, as data: `ready` with each rung's exact size, or `error` with the
reason's substring. Generated files are cached under
`~/.cache/videoflix/corpus/<hash of the recipe and the FFmpeg version>/`, so a second run costs
nothing.

    python -m tests.corpus.sources --generate    # build (or reuse) every file, print the paths
    python -m tests.corpus.sources --table       # the README's "Outcomes by source" table
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

# A recipe step: ("ffmpeg", arg, …) with "{out}" for the step's output file and "{prev}" for the
# previous step's output; ("truncate", percent) keeps the first percent of the previous file;
# ("text", line, repeat) and ("random", size, seed) write bytes directly.
Step = tuple[str, ...]

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "videoflix" / "corpus"
FAST = ("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p")
AAC = ("-c:a", "aac", "-b:a", "96k")


@dataclass(frozen=True)
class Rung:
    name: str
    width: int
    height: int


@dataclass(frozen=True)
class Expected:
    """`ready` with exactly these rungs, or `error` whose processing_error contains `reason`."""

    state: str
    rungs: tuple[Rung, ...] = ()
    reason: str = ""


@dataclass(frozen=True)
class Entry:
    id: str
    filename: str
    what: str  # one line for the README table
    steps: tuple[Step, ...]
    expected: Expected
    has_audio: bool = True

    def digest(self) -> str:
        recipe = json.dumps([self.filename, self.steps, ffmpeg_version()], sort_keys=True)
        return hashlib.sha256(recipe.encode()).hexdigest()[:16]

    def path(self) -> Path:
        return CACHE / self.digest() / self.filename


def ready(*rungs: tuple[str, int, int]) -> Expected:
    return Expected("ready", tuple(Rung(n, w, h) for n, w, h in rungs))


def error(reason: str) -> Expected:
    return Expected("error", reason=reason)


def lavfi_video(spec: str) -> Step:
    return ("-f", "lavfi", "-i", spec)


def sine(seconds: float, rate: int = 48000, freq: int = 440) -> Step:
    return ("-f", "lavfi", "-i", f"sine=frequency={freq}:sample_rate={rate}:duration={seconds}")


def ffmpeg(*parts: Iterable[str] | str) -> Step:
    args: list[str] = ["ffmpeg"]
    for part in parts:
        args += [part] if isinstance(part, str) else list(part)
    return (*args, "{out}")


def phone(size: str, seconds: float = 2, rate: int = 30) -> Step:
    return ffmpeg(lavfi_video(f"testsrc2=size={size}:rate={rate}:duration={seconds}"),
                  sine(seconds), FAST, AAC, "-shortest")


# Expected sizes: the short side is the rung's height; the long side keeps the display aspect
# ratio, rounded to the nearest even number. Written out by hand on purpose: a second copy of
# the planner's formula would agree with the planner's bugs.
PORTRAIT_720 = (("120p", 120, 214), ("360p", 360, 640), ("720p", 720, 1280))
PORTRAIT_1080 = (*PORTRAIT_720, ("1080p", 1080, 1920))
LANDSCAPE_360 = (("120p", 214, 120), ("360p", 640, 360))
LANDSCAPE_1080 = (*LANDSCAPE_360, ("720p", 1280, 720), ("1080p", 1920, 1080))
SMALL = "testsrc2=size=640x360:rate=15:duration=2"


def _rotated(degrees: int) -> tuple[Step, ...]:
    # FFmpeg 5.1 has no -display_rotation; the mp4 muxer turns the `rotate` tag into the
    # display matrix when streams are copied, like a phone that records the sensor's landscape.
    return (
        ffmpeg(lavfi_video("testsrc2=size=1920x1080:rate=15:duration=2"), sine(2), FAST, AAC,
               "-shortest"),
        ("ffmpeg", "-i", "{prev}", "-c", "copy", "-metadata:s:v", f"rotate={degrees}", "{out}"),
    )


def _hdr(transfer: str) -> Step:
    # 1 s keeps x265's time at 4K bounded; the tags are what decide the tone mapping.
    return ffmpeg(
        lavfi_video("testsrc2=size=3840x2160:rate=10:duration=1"), sine(1),
        "-vf", "format=yuv420p10le", "-c:v", "libx265", "-preset", "ultrafast",
        "-x265-params",
        f"log-level=error:colorprim=bt2020:transfer={transfer}:colormatrix=bt2020nc",
        "-color_primaries", "bt2020", "-color_trc", transfer, "-colorspace", "bt2020nc",
        "-tag:v", "hvc1", AAC, "-shortest",
    )


ENTRIES: tuple[Entry, ...] = (
    Entry("portrait-720x1280", "phone-720x1280.mp4", "phone portrait 720x1280 H.264/AAC 30 fps",
          (phone("720x1280"),), ready(*PORTRAIT_720)),
    Entry("portrait-1080x1920", "phone-1080x1920.mp4", "phone portrait 1080x1920 H.264/AAC 15 fps",
          (phone("1080x1920", rate=15),), ready(*PORTRAIT_1080)),
    Entry("rotated-90", "rotated-90.mp4", "1920x1080 stored, display matrix 90°",
          _rotated(90), ready(*PORTRAIT_1080)),
    Entry("rotated-180", "rotated-180.mp4", "1920x1080 stored, display matrix 180°",
          _rotated(180), ready(*LANDSCAPE_1080)),
    Entry("rotated-270", "rotated-270.mp4", "1920x1080 stored, display matrix 270°",
          _rotated(270), ready(*PORTRAIT_1080)),
    Entry("hdr-pq-2160p", "hdr-pq.mp4", "3840x2160 10-bit HEVC, BT.2020 PQ (HDR10)",
          (_hdr("smpte2084"),), ready(*LANDSCAPE_1080)),
    Entry("hdr-hlg-2160p", "hdr-hlg.mp4", "3840x2160 10-bit HEVC, BT.2020 HLG",
          (_hdr("arib-std-b67"),), ready(*LANDSCAPE_1080)),
    Entry("vfr", "vfr.mp4", "variable frame rate: 1 s at 24 fps then 1 s at 30 fps",
          (ffmpeg(lavfi_video("testsrc2=size=640x360:rate=30:duration=1.8"), sine(2),
                  "-vf", "settb=1/600,setpts='if(lt(N,24),N/24,1+(N-24)/30)/TB'",
                  "-fps_mode", "vfr", "-enc_time_base:v", "1/600", "-video_track_timescale",
                  "600", FAST, AAC),),
          ready(*LANDSCAPE_360)),
    Entry("fps-60", "fps60.mp4", "640x360 at 60 fps",
          (ffmpeg(lavfi_video("testsrc2=size=640x360:rate=60:duration=2"), sine(2), FAST, AAC,
                  "-shortest"),),
          ready(*LANDSCAPE_360)),
    Entry("anamorphic-576", "anamorphic.mp4", "720x576 stored, SAR 64:45 (DAR 16:9 = 1024x576)",
          (ffmpeg(lavfi_video("testsrc2=size=720x576:rate=25:duration=2"), sine(2),
                  "-vf", "setsar=64/45", FAST, AAC, "-shortest"),),
          ready(("120p", 214, 120), ("360p", 640, 360))),
    Entry("odd-1279x719", "odd-1279x719.mp4", "odd size 1279x719 (H.264 4:4:4, a screen capture)",
          # testsrc2 only makes even sizes: crop in 4:4:4, which has no chroma pairs to keep.
          (ffmpeg(lavfi_video("testsrc2=size=1280x720:rate=15:duration=2"), sine(2),
                  "-vf", "format=yuv444p,crop=1279:719:0:0", "-c:v", "libx264", "-preset",
                  "ultrafast", "-pix_fmt", "yuv444p", AAC,
                  "-shortest"),),
          ready(("120p", 214, 120), ("360p", 640, 360))),
    Entry("odd-853x481", "odd-853x481.webm", "odd size 853x481 VP9/Opus",
          (ffmpeg(lavfi_video("testsrc2=size=854x482:rate=15:duration=2"), sine(2),
                  "-vf", "scale=853:481,setsar=1,format=yuv420p", "-c:v", "libvpx-vp9", "-deadline",
                  "realtime", "-cpu-used", "8", "-b:v", "500k",
                  "-pix_fmt", "yuv420p", "-c:a", "libopus", "-shortest"),),
          ready(("120p", 212, 120), ("360p", 638, 360))),
    Entry("interlaced-576i", "interlaced.mp4", "720x576i25, top field first (broadcast/camcorder)",
          (ffmpeg(lavfi_video("testsrc2=size=720x576:rate=50:duration=2"), sine(2),
                  "-vf", "tinterlace=interleave_top,fieldorder=tff", "-flags", "+ilme+ildct",
                  "-top", "1", FAST, AAC, "-shortest"),),
          ready(("120p", 150, 120), ("360p", 450, 360))),
    Entry("no-audio", "no-audio.mp4", "640x360 H.264, no audio stream",
          (ffmpeg(lavfi_video(SMALL), FAST),), ready(*LANDSCAPE_360), has_audio=False),
    Entry("audio-only", "voice-memo.m4a", "AAC audio only (.m4a)",
          (ffmpeg(sine(2), AAC),), error("no video stream"), has_audio=False),
    Entry("multi-audio-5.1", "multi-audio.mkv",
          "MKV: H.264 + AAC 5.1 48 kHz + Opus stereo (two audio tracks)",
          (ffmpeg(lavfi_video(SMALL), sine(2), sine(2, freq=660),
                  "-map", "0:v", "-map", "1:a", "-map", "2:a", FAST,
                  "-c:a:0", "aac", "-ac:a:0", "6", "-c:a:1", "libopus", "-ac:a:1", "2",
                  "-shortest"),),
          ready(*LANDSCAPE_360)),
    Entry("webm", "clip.webm", "WebM VP9/Opus",
          (ffmpeg(lavfi_video(SMALL), sine(2), "-c:v", "libvpx-vp9", "-deadline", "realtime",
                  "-cpu-used", "8", "-b:v", "500k", "-c:a", "libopus", "-shortest"),),
          ready(*LANDSCAPE_360)),
    Entry("mov-5.1-44k", "camera.mov", "QuickTime MOV, H.264 + AAC 5.1 44.1 kHz",
          (ffmpeg(lavfi_video(SMALL), sine(2, rate=44100), FAST, "-c:a", "aac", "-ac", "6",
                  "-shortest"),),
          ready(*LANDSCAPE_360)),
    Entry("avi", "old.avi", "AVI MPEG-4 Part 2 + MP3",
          (ffmpeg(lavfi_video(SMALL), sine(2, rate=44100), "-c:v", "mpeg4", "-q:v", "5",
                  "-c:a", "libmp3lame", "-shortest"),),
          ready(*LANDSCAPE_360)),
    Entry("mpeg-ts", "broadcast.ts", "MPEG-TS H.264/AAC",
          (ffmpeg(lavfi_video(SMALL), sine(2), FAST, AAC, "-shortest"),),
          ready(*LANDSCAPE_360)),
    Entry("short-0.5s", "short.mp4", "a 0.5 s clip",
          (ffmpeg(lavfi_video("testsrc2=size=640x360:rate=30:duration=0.5"), sine(0.5), FAST,
                  AAC, "-shortest"),),
          ready(*LANDSCAPE_360)),
    Entry("truncated", "truncated.mp4", "first 40 % of an MP4 whose moov is at the end",
          (ffmpeg(lavfi_video("testsrc2=size=640x360:rate=15:duration=3"), sine(3), FAST, AAC,
                  "-shortest"),
           ("truncate", "40")),
          error("not a readable video"), has_audio=False),
    Entry("text-as-mp4", "notes.mp4", "a text file renamed .mp4",
          (("text", "this is not a video, just my shopping list\n", "200"),),
          error("not a readable video"), has_audio=False),
    Entry("random-bytes", "random.mp4", "64 KiB of random bytes named .mp4",
          (("random", "65536", "10"),),
          error("not a readable video"), has_audio=False),
)

BY_ID = {e.id: e for e in ENTRIES}


@cache
def ffmpeg_version() -> str:
    out = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True, check=True)
    return out.stdout.splitlines()[0]


def _run_step(step: Step, prev: Path | None, out: Path) -> None:
    kind = step[0]
    if kind == "ffmpeg":
        args = [str(prev) if a == "{prev}" else str(out) if a == "{out}" else a for a in step[1:]]
        subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args], check=True)
    elif kind == "truncate":
        assert prev is not None
        data = prev.read_bytes()
        out.write_bytes(data[: len(data) * int(step[1]) // 100])
    elif kind == "text":
        out.write_text(step[1] * int(step[2]))
    elif kind == "random":
        out.write_bytes(random.Random(int(step[2])).randbytes(int(step[1])))
    else:
        raise ValueError(f"unknown recipe step {kind!r}")


def generate(entry: Entry) -> Path:
    """The entry's file, built once per recipe (an atomic rename publishes a finished one)."""
    target = entry.path()
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        prev: Path | None = None
        for i, step in enumerate(entry.steps):
            out = Path(tmp) / f"{i}-{entry.filename}"
            _run_step(step, prev, out)
            prev = out
        assert prev is not None
        os.replace(prev, target)
    return target


def generate_all(entries: Iterable[Entry] = ENTRIES) -> dict[str, Path]:
    return {e.id: generate(e) for e in entries}


def outcome_text(expected: Expected) -> str:
    if expected.state == "ready":
        return "ready: " + ", ".join(f"{r.name} {r.width}x{r.height}" for r in expected.rungs)
    return f'error: "…{expected.reason}…"'


TABLE_HEADER = "| source | outcome |\n| --- | --- |\n"


def table(entries: Iterable[Entry] = ENTRIES) -> str:
    """The README's "Outcomes by source" table, from the same data the corpus tests assert."""
    return TABLE_HEADER + "".join(
        f"| `{e.id}`: {e.what} | {outcome_text(e.expected)} |\n" for e in entries
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", action="store_true", help="print the README table")
    parser.add_argument("--generate", action="store_true", help="build every file")
    args = parser.parse_args(argv)
    if args.table:
        sys.stdout.write(table())
    if args.generate:
        if shutil.which("ffmpeg") is None:
            sys.exit("ffmpeg is not installed")
        for entry_id, path in generate_all().items():
            sys.stdout.write(f"{entry_id}\t{path}\n")


if __name__ == "__main__":
    main()
