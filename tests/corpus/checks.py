"""What every corpus outcome must satisfy, checked on the real outputs with ffprobe.

Both modes (embedded dispatcher, operator on the control plane) call `problems`, so they are held
to exactly the same bar. It returns a list of human-readable problems instead of asserting, so one
run reports every entry that fails and why.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any

from tests.corpus.sources import Entry

BT709 = {"color_primaries": "bt709", "color_transfer": "bt709", "color_space": "bt709"}


def ffprobe(path: Path) -> dict[str, Any]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def _video(info: Mapping[str, Any]) -> dict[str, Any]:
    return next(s for s in info["streams"] if s["codec_type"] == "video")


def _duration(info: Mapping[str, Any]) -> float:
    """The video stream's duration (MKV/WebM/TS only carry the container's)."""
    video = _video(info)
    return float(video.get("duration") or info["format"]["duration"])


def source_duration_and_frame(source: Path) -> tuple[float, float]:
    info = ffprobe(source)
    video = _video(info)
    rate = Fraction(video.get("avg_frame_rate") or "0/1")
    if rate <= 0:
        rate = Fraction(video["r_frame_rate"])
    return _duration(info), float(1 / rate)


def rendition_problems(
    name: str, path: Path, width: int, height: int, source: tuple[float, float], has_audio: bool
) -> list[str]:
    info = ffprobe(path)
    video = _video(info)
    found: list[str] = []
    got = (video["codec_name"], video["pix_fmt"], video["width"], video["height"])
    if got != ("h264", "yuv420p", width, height):
        found.append(f"{name}: video {got}, want ('h264', 'yuv420p', {width}, {height})")
    tags = {k: video.get(k) for k in BT709}
    if tags != BT709 or video.get("color_range") != "tv":
        found.append(f"{name}: colour tags {tags} range {video.get('color_range')}, want bt709 tv")
    # Deinterlaced and square pixels: players show the frame as stored.
    if video.get("field_order", "progressive") != "progressive":
        found.append(f"{name}: field order {video['field_order']}, want progressive")
    if video.get("sample_aspect_ratio", "1:1") != "1:1":
        found.append(f"{name}: pixel aspect {video['sample_aspect_ratio']}, want 1:1")
    duration, frame = source
    if abs(_duration(info) - duration) > frame + 1e-3:
        found.append(
            f"{name}: duration {_duration(info):.3f} s, source {duration:.3f} s "
            f"(more than one frame, {frame:.3f} s)"
        )
    audio = [s for s in info["streams"] if s["codec_type"] == "audio"]
    if has_audio:
        shapes = [(a["codec_name"], a["channels"], a["sample_rate"]) for a in audio]
        if not audio or any(s != ("aac", 2, "48000") for s in shapes):
            found.append(f"{name}: audio {shapes}, want [('aac', 2, '48000')]")
    elif audio:
        found.append(f"{name}: {len(audio)} audio stream(s) from a source without audio")
    return found


def problems(
    entry: Entry,
    source: Path,
    state: str,
    processing_error: str | None,
    converted: Mapping[str, Mapping[str, Any]],
    fetch: Callable[[str], Path],
) -> list[str]:
    """Everything wrong with one entry's outcome (empty: it is exactly as expected).

    `fetch` turns a storage key of `converted` into a local file to probe."""
    want = entry.expected
    if state != want.state:
        return [f"ended {state!r} ({processing_error}), want {want.state!r}"]
    if want.state == "error":
        found = []
        if want.reason not in (processing_error or ""):
            found.append(f"error {processing_error!r} lacks {want.reason!r}")
        if converted:
            found.append(f"an error left converted_files {sorted(converted)}")
        return found
    names = [r.name for r in want.rungs]
    if list(converted) != names:
        return [f"rungs {list(converted)}, want {names}"]
    found = []
    timing = source_duration_and_frame(source)
    for rung in want.rungs:
        info = converted[rung.name]
        if (info.get("width"), info.get("height")) != (rung.width, rung.height):
            found.append(
                f"{rung.name}: row says {info.get('width')}x{info.get('height')}, "
                f"want {rung.width}x{rung.height}"
            )
        found += rendition_problems(
            rung.name, fetch(str(info["file"])), rung.width, rung.height, timing, entry.has_audio
        )
    return found


def report(failures: Mapping[str, list[str]], seconds: float, mode: str) -> str:
    lines = [f"{mode}: {len(failures)} corpus entries failed ({seconds:.0f} s):"]
    for entry_id, found in failures.items():
        lines += [f"  {entry_id}:"] + [f"    - {p}" for p in found]
    return "\n".join(lines)
