"""A sample video made by ffmpeg itself (test pattern, clock, a tone): no download, no licence."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


class FfmpegMissing(RuntimeError):
    pass


def sample_video_argv(
    path: Path, seconds: float = 10.0, width: int = 1280, height: int = 720, fps: int = 25
) -> list[str]:
    """ffmpeg arguments for an H.264/AAC MP4 of `seconds` with picture and sound."""
    if seconds <= 0 or width < 16 or height < 16:
        raise ValueError("a sample needs a positive duration and at least 16x16 pixels")
    return [
        "ffmpeg",
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        f"testsrc2=size={width}x{height}:rate={fps}",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000",
        "-t",
        f"{seconds:g}",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        "-movflags",
        "+faststart",
        str(path),
    ]


def make_sample_video(
    path: Path, seconds: float = 10.0, width: int = 1280, height: int = 720
) -> Path:
    """Write the sample to `path` (its folder is created) and return it."""
    if shutil.which("ffmpeg") is None:
        raise FfmpegMissing("ffmpeg is not installed (Debian: apt-get install -y ffmpeg)")
    path.parent.mkdir(parents=True, exist_ok=True)
    argv = sample_video_argv(path, seconds, width, height)
    subprocess.run(argv, check=True, capture_output=True, timeout=300)
    return path
