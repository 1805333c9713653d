"""Sources made by FFmpeg itself (lavfi), a few broken files, and helpers to inspect outputs.

Clips are 2-4 s and small: the machine has two shared cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


def ffmpeg(*args: str) -> None:
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args], check=True, timeout=120
    )


def ffprobe(path: Path | str, *args: str) -> dict[str, Any]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-print_format", "json", *args, str(path)],
        check=True, capture_output=True, text=True, timeout=60,
    ).stdout
    return json.loads(out)  # type: ignore[no-any-return]


def streams(path: Path | str) -> dict[str, dict[str, Any]]:
    """First video and audio stream of a file, by codec_type."""
    found: dict[str, dict[str, Any]] = {}
    for stream in ffprobe(path, "-show_streams")["streams"]:
        found.setdefault(stream["codec_type"], stream)
    return found


def keyframe_times(path: Path | str) -> list[float]:
    packets = ffprobe(
        path, "-select_streams", "v:0", "-show_entries", "packet=pts_time,flags"
    )["packets"]
    return [round(float(p["pts_time"]), 3) for p in packets if "K" in p["flags"]]


def mean_luma(jpeg: Path) -> float:
    frames = ffprobe(
        f"movie={jpeg},signalstats", "-f", "lavfi",
        "-show_entries", "frame_tags=lavfi.signalstats.YAVG",
    )["frames"]
    return float(frames[0]["tags"]["lavfi.signalstats.YAVG"])


@dataclass
class Run:
    code: int
    result: dict[str, Any]
    progress: list[dict[str, Any]]
    stderr: str


def transcoder(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> Run:
    """The real CLI in a child process, exactly as a Job or the embedded runner calls it."""
    full_env = {**os.environ, **(env or {})}
    full_env.setdefault("VIDEOFLIX_RESULT_FILE", os.devnull)
    proc = subprocess.run(
        [sys.executable, "-m", "videoflix_transcoder", *args],
        capture_output=True, text=True, env=full_env, cwd=cwd, timeout=300,
    )
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert lines and "result" in lines[-1], proc.stdout + proc.stderr
    progress = [line["progress"] for line in lines[:-1] if "progress" in line]
    return Run(proc.returncode, lines[-1]["result"], progress, proc.stderr)


@dataclass(frozen=True)
class Sources:
    hd: Path  # 1920x1080 30 fps, stereo 44.1 kHz, 3 s
    sd: Path  # 854x480 25 fps, mono, 2 s
    portrait: Path  # stored 640x360 with a 90° rotation: shown 360x640
    silent: Path  # 640x360, no audio
    tenbit_odd: Path  # 641x361 10-bit 4:4:4 (odd sizes need 4:4:4)
    short: Path  # 0.3 s
    dark_start: Path  # 640x360, black for 3 s then bright for 1 s
    text: Path
    truncated: Path  # moov at the end, cut in half
    truncated_faststart: Path  # moov at the front, media cut off
    empty: Path
    audio_only: Path
    image: Path
    long_audio: Path  # 1 s of video, 3 s of audio (a screen recording that stopped early)
    black: Path  # 320x240, black throughout


@pytest.fixture(scope="session")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Sources:
    d = tmp_path_factory.mktemp("sources")
    fast = ["-c:v", "libx264", "-preset", "ultrafast"]
    s = Sources(*(d / name for name in [
        "hd.mp4", "sd.mov", "portrait.mp4", "silent.mp4", "tenbit.mkv", "short.mp4",
        "dark.mp4", "notes.txt", "truncated.mp4", "truncated_faststart.mp4", "empty.mp4",
        "audio.m4a", "frame.png", "long_audio.mp4", "black.mp4",
    ]))
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30:duration=3",
           "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100:duration=3",
           "-ac", "2", *fast, "-pix_fmt", "yuv420p", "-c:a", "aac", str(s.hd))
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=854x480:rate=25:duration=2",
           "-f", "lavfi", "-i", "sine=frequency=300:duration=2", *fast, "-pix_fmt", "yuv420p",
           "-c:a", "aac", str(s.sd))
    unrotated = d / "unrotated.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30:duration=2",
           "-f", "lavfi", "-i", "sine=duration=2", *fast, "-pix_fmt", "yuv420p",
           "-c:a", "aac", str(unrotated))
    # FFmpeg 5.1 writes the display matrix from the legacy tag only when stream copying.
    ffmpeg("-i", str(unrotated), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(s.portrait))
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30:duration=2", *fast,
           "-pix_fmt", "yuv420p", str(s.silent))
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=640x360:rate=24:duration=2",
           "-vf", "scale=641:361,setsar=1",
           "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv444p10le", str(s.tenbit_odd))
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30:duration=0.3",
           "-f", "lavfi", "-i", "sine=duration=0.3", *fast, "-pix_fmt", "yuv420p",
           "-c:a", "aac", str(s.short))
    ffmpeg("-f", "lavfi", "-i", "color=c=black:size=640x360:rate=30:duration=3",
           "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30:duration=1",
           "-filter_complex", "[0:v][1:v]concat=n=2:v=1[v]", "-map", "[v]", *fast,
           "-pix_fmt", "yuv420p", str(s.dark_start))
    s.text.write_text("This is not a video.\nJust some notes.\n" * 20)
    whole = s.sd.read_bytes()
    s.truncated.write_bytes(whole[: len(whole) // 2])  # mov writes moov at the end
    faststart = d / "faststart.mp4"
    ffmpeg("-i", str(s.hd), "-c", "copy", "-movflags", "+faststart", str(faststart))
    data = faststart.read_bytes()
    s.truncated_faststart.write_bytes(data[: len(data) // 3])
    s.empty.write_bytes(b"")
    ffmpeg("-f", "lavfi", "-i", "sine=duration=2", "-c:a", "aac", str(s.audio_only))
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240", "-frames:v", "1", str(s.image))
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30:duration=1",
           "-f", "lavfi", "-i", "sine=duration=3", *fast, "-pix_fmt", "yuv420p",
           "-c:a", "aac", str(s.long_audio))
    ffmpeg("-f", "lavfi", "-i", "color=c=black:size=320x240:rate=30:duration=2", *fast,
           "-pix_fmt", "yuv420p", str(s.black))
    return s


@pytest.fixture(scope="session")
def tx() -> Any:
    """The helpers above (test modules cannot import a conftest under importlib mode)."""
    return sys.modules[__name__]
