"""The real CLI on real FFmpeg with local paths (embedded mode), outputs checked with ffprobe."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from videoflix_transcoder.mp4 import top_level_boxes


def check_playlist(tx: Any, folder: Path, duration: float) -> list[tuple[int, int]]:
    """Parse index.m3u8; every byte range must start at a box of video.mp4 inside the file."""
    text = (folder / "index.m3u8").read_text()
    media = folder / "video.mp4"
    size = media.stat().st_size
    with media.open("rb") as f:
        boxes = {b.offset: b.type for b in top_level_boxes(f)}
    lines = text.splitlines()
    assert lines[0] == "#EXTM3U" and lines[-1] == "#EXT-X-ENDLIST"
    init = re.search(r'#EXT-X-MAP:URI="video.mp4",BYTERANGE="(\d+)@0"', text)
    assert init is not None
    assert boxes[0] == "ftyp" and boxes[int(init.group(1))] in {"sidx", "moof"}
    ranges = [tuple(map(int, m)) for m in re.findall(r"#EXT-X-BYTERANGE:(\d+)@(\d+)", text)]
    assert ranges
    for length, offset in ranges:
        assert boxes[offset] == "moof" and offset + length <= size
    target = int(re.search(r"#EXT-X-TARGETDURATION:(\d+)", text).group(1))  # type: ignore[union-attr]
    extinf = [float(x) for x in re.findall(r"#EXTINF:([\d.]+),", text)]
    assert len(extinf) == len(ranges) and max(extinf) <= target
    assert sum(extinf) == pytest.approx(duration, abs=0.1)
    # FFmpeg's own HLS demuxer plays it back.
    played = tx.ffprobe(folder / "index.m3u8", "-show_entries", "format=duration:stream=codec_type")
    assert float(played["format"]["duration"]) == pytest.approx(duration, abs=0.1)
    return [(o, n) for n, o in ranges]


def check_rendition(
    tx: Any, file: Path, size: tuple[int, int], duration: float, fps: float, audio: bool
) -> None:
    found = tx.streams(file)
    video = found["video"]
    assert (video["codec_name"], video["profile"], video["pix_fmt"]) == ("h264", "High", "yuv420p")
    assert (video["width"], video["height"]) == size
    assert not video.get("side_data_list")  # rotation applied to the pixels, none left to apply
    assert abs(float(video["duration"]) - duration) <= 1 / fps + 1e-3  # within a frame
    # Edit lists: the first frame is shown at 0, not after the B-frame delay ...
    assert float(video["start_time"]) == pytest.approx(0.0, abs=1e-3)
    if audio:
        sound = found["audio"]
        assert (sound["codec_name"], sound["channels"], sound["sample_rate"]) == ("aac", 2, "48000")
        # ... and the AAC priming samples (1024 at 48 kHz) sit before 0: audio and video in sync.
        assert float(sound["start_time"]) == pytest.approx(-1024 / 48000, abs=1e-3)
    else:
        assert "audio" not in found
    with file.open("rb") as f:
        kinds = [b.type for b in top_level_boxes(f)]
    # moov (the init segment) first and a sidx before the media: progressive playback seeks.
    assert kinds[:3] == ["ftyp", "moov", "sidx"] and "moof" in kinds
    assert kinds.index("moov") < kinds.index("moof")


def test_probe_reports_display_size_rotation_and_codecs(sources: Any, tx: Any) -> None:
    expected = {
        "hd": (1920, 1080, 0, "aac", 30.0, 3.0),
        "sd": (854, 480, 0, "aac", 25.0, 2.0),
        "portrait": (360, 640, 90, "aac", 30.0, 2.0),
        "silent": (640, 360, 0, None, 30.0, 2.0),
        "tenbit_odd": (641, 361, 0, None, 24.0, 2.0),
        "short": (320, 240, 0, "aac", 30.0, 0.3),
        "long_audio": (320, 240, 0, "aac", 30.0, 3.0),  # short video is not "truncated"
    }
    for name, (w, h, rotation, audio, fps, duration) in expected.items():
        run = tx.transcoder("probe", "--source", str(getattr(sources, name)))
        assert run.code == 0, run.result
        r = run.result
        assert (r["width"], r["height"], r["rotation"], r["audioCodec"]) == (w, h, rotation, audio)
        assert r["videoCodec"] == "h264" and r["fps"] == fps and r["bitrate"] > 0
        assert r["durationSeconds"] == pytest.approx(duration, abs=0.05)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("text", "text file"),
        ("truncated", "not a readable video file"),
        ("truncated_faststart", "truncated"),
        ("empty", "empty (0 bytes)"),
        ("audio_only", "no video stream (audio only: aac)"),
        ("image", "still image"),
    ],
)
def test_broken_inputs_exit_2_with_a_reason(
    sources: Any, tx: Any, tmp_path: Path, name: str, reason: str
) -> None:
    source = str(getattr(sources, name))
    run = tx.transcoder("probe", "--source", source)
    assert run.code == 2 and reason in run.result["error"]
    assert "\n" not in run.result["error"]
    run = tx.transcoder("rendition", "--source", source, "--dest", str(tmp_path / "out"),
                        "--name", "120p", "--width", "214", "--height", "120")
    assert run.code == 2 and reason in run.result["error"]
    assert not (tmp_path / "out").exists()


def test_missing_source_and_bad_arguments_exit_2(tx: Any, tmp_path: Path) -> None:
    run = tx.transcoder("probe", "--source", str(tmp_path / "nope.mp4"))
    assert (run.code, run.result) == (2, {"error": f"source not found: {tmp_path / 'nope.mp4'}"})
    run = tx.transcoder("ladder", "--source", "x", "--dest", "y", "--rung", "../evil:214x120")
    assert run.code == 2 and "bad rendition name" in run.result["error"]
    # The old short-side-only form is gone: the planner sends the exact size.
    run = tx.transcoder("ladder", "--source", "x", "--dest", "y", "--rung", "120p:120")
    assert run.code == 2 and "expected NAME:WIDTHxHEIGHT" in run.result["error"]
    run = tx.transcoder("rendition", "--source", "x", "--dest", "y", "--name", "120p",
                        "--height", "120")
    assert run.code == 2 and "--width" in run.result["error"]


def test_ladder_on_1080p_source(sources: Any, tx: Any, tmp_path: Path) -> None:
    dest = tmp_path / "videos" / "42"
    result_file = tmp_path / "termination-log"
    run = tx.transcoder(
        "ladder", "--source", str(sources.hd), "--dest", f"{dest}/",
        "--rung", "120p:214x120", "--rung", "360p:640x360", "--rung", "720p:1280x720",
        "--rung", "1080p:1920x1080",
        env={"VIDEOFLIX_CPU_LIMIT": "2", "VIDEOFLIX_RESULT_FILE": str(result_file)},
    )
    assert run.code == 0, run.stderr
    assert json.loads(result_file.read_text()) == run.result
    assert len(result_file.read_bytes()) <= 4096
    assert run.progress and run.progress[-1]["percent"] == 100.0
    assert all(0 <= p["percent"] <= 100 for p in run.progress)
    sizes = {"120p": (214, 120), "360p": (640, 360), "720p": (1280, 720), "1080p": (1920, 1080)}
    by_name = {r["name"]: r for r in run.result["renditions"]}
    assert list(by_name) == list(sizes)
    boundaries = []
    for name, size in sizes.items():
        r = by_name[name]
        assert (r["width"], r["height"]) == size
        assert r["file"] == f"{dest}/{name}/video.mp4"
        assert r["playlist"] == f"{dest}/{name}/index.m3u8"
        assert r["bytes"] == Path(r["file"]).stat().st_size
        assert r["bitrate"] > 0 and r["encodeSeconds"] > 0
        assert r["peakBitrate"] >= 0.9 * r["bitrate"]
        assert re.fullmatch(r"avc1\.6400[0-9a-f]{2},mp4a\.40\.2", r["codecs"])
        check_rendition(tx, dest / name / "video.mp4", size, 3.0, 30.0, audio=True)
        check_playlist(tx, dest / name, 3.0)
        boundaries.append(tx.keyframe_times(dest / name / "video.mp4"))
    # Same keyframes in every rung, exactly 2 s apart: players switch at any segment.
    assert all(b == boundaries[0] for b in boundaries)
    assert [round(b - boundaries[0][0], 3) for b in boundaries[0]] == [0.0, 2.0]
    segments = {
        tuple(re.findall(r"#EXTINF:([\d.]+)", (dest / n / "index.m3u8").read_text()))
        for n in sizes
    }
    assert len(segments) == 1  # same segment boundaries in every rung
    # A rung made by its own process (a per-rendition Job) lines up with the ladder's.
    alone = tx.transcoder("rendition", "--source", str(sources.hd), "--dest", str(tmp_path / "a"),
                          "--name", "360p", "--width", "640", "--height", "360")
    assert alone.code == 0, alone.stderr
    assert tx.keyframe_times(tmp_path / "a/360p/video.mp4") == boundaries[0]
    alone_segments = re.findall(r"#EXTINF:([\d.]+)", (tmp_path / "a/360p/index.m3u8").read_text())
    assert segments == {tuple(alone_segments)}
    # Higher rungs carry more bits.
    rates = [by_name[n]["bitrate"] for n in sizes]
    assert rates == sorted(rates)


def test_lower_source_never_upscales(sources: Any, tx: Any, tmp_path: Path) -> None:
    run = tx.transcoder(
        "ladder", "--source", str(sources.sd), "--dest", "videos/7/",
        "--rung", "120p:214x120", "--rung", "360p:640x360", cwd=tmp_path,
    )
    assert run.code == 0, run.stderr
    # Relative paths under the storage root give the same keys as S3.
    assert [r["file"] for r in run.result["renditions"]] == [
        "videos/7/120p/video.mp4", "videos/7/360p/video.mp4",
    ]
    assert "skipped" not in run.result
    assert sorted(p.name for p in (tmp_path / "videos" / "7").iterdir()) == ["120p", "360p"]
    check_rendition(tx, tmp_path / "videos/7/360p/video.mp4", (640, 360), 2.0, 25.0, audio=True)

    # The transcoder never re-decides the plan: a rung above the source refuses the request.
    run = tx.transcoder("rendition", "--source", str(sources.sd), "--dest", str(tmp_path / "o"),
                        "--name", "720p", "--width", "1280", "--height", "720")
    assert run.code == 2 and "refusing to upscale" in run.result["error"]
    run = tx.transcoder("ladder", "--source", str(sources.sd), "--dest", str(tmp_path / "o"),
                        "--rung", "360p:640x360", "--rung", "720p:1280x720")
    assert run.code == 2 and "refusing to upscale" in run.result["error"]
    run = tx.transcoder("rendition", "--source", str(sources.sd), "--dest", str(tmp_path / "o"),
                        "--name", "360p", "--width", "360", "--height", "360")
    assert run.code == 2 and "aspect" in run.result["error"]
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("name", "height", "size", "duration", "fps", "audio"),
    [
        ("portrait", 360, (360, 640), 2.0, 30.0, True),  # portrait stays portrait
        ("silent", 360, (640, 360), 2.0, 30.0, False),
        ("tenbit_odd", 360, (640, 360), 2.0, 24.0, False),  # 10-bit 4:4:4 becomes 8-bit 4:2:0
        ("short", 120, (160, 120), 0.3, 30.0, True),
    ],
)
def test_rendition_of_awkward_sources(
    sources: Any, tx: Any, tmp_path: Path, name: str, height: int,
    size: tuple[int, int], duration: float, fps: float, audio: bool,
) -> None:
    run = tx.transcoder("rendition", "--source", str(getattr(sources, name)),
                        "--dest", str(tmp_path), "--name", f"{height}p",
                        "--width", str(size[0]), "--height", str(size[1]),
                        "--maxrate", "900", "--audio-bitrate", "96")
    assert run.code == 0, run.stderr
    (rendition,) = run.result["renditions"]
    assert (rendition["width"], rendition["height"]) == size
    folder = tmp_path / f"{height}p"
    check_rendition(tx, folder / "video.mp4", size, duration, fps, audio)
    check_playlist(tx, folder, duration)


def test_thumbnail_avoids_a_black_start(sources: Any, tx: Any, tmp_path: Path) -> None:
    run = tx.transcoder("thumbnail", "--source", str(sources.dark_start), "--dest", str(tmp_path))
    assert run.code == 0, run.stderr
    folder = tmp_path / "thumbnails"
    assert run.result == {"poster": str(folder / "poster.jpg"),
                          "sprite": str(folder / "sprite.jpg"),
                          "vtt": str(folder / "storyboard.vtt")}
    poster = tx.streams(folder / "poster.jpg")["video"]
    assert (poster["codec_name"], poster["width"], poster["height"]) == ("mjpeg", 640, 360)
    assert tx.mean_luma(folder / "poster.jpg") > 60  # black is 16
    sprite = tx.streams(folder / "sprite.jpg")["video"]
    vtt = (folder / "storyboard.vtt").read_text()
    cues = re.findall(r"(\S+) --> (\S+)\nsprite\.jpg#xywh=(\d+),(\d+),(\d+),(\d+)", vtt)
    assert vtt.startswith("WEBVTT\n") and len(cues) == 2  # 4 s, a tile every 2 s
    assert cues[0][:2] == ("00:00:00.000", "00:00:02.000")
    assert cues[-1][1] == "00:00:04.000"
    for *_, x, y, w, h in cues:
        assert int(x) + int(w) <= sprite["width"] and int(y) + int(h) <= sprite["height"]
    assert (sprite["width"], sprite["height"]) == (320, 90)


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_sigterm_stops_ffmpeg_and_publishes_nothing(
    sources: Any, tmp_path: Path
) -> None:
    scratch, dest = tmp_path / "scratch", tmp_path / "dest"
    env = {**os.environ, "VIDEOFLIX_SCRATCH_DIR": str(scratch), "VIDEOFLIX_CPU_LIMIT": "1",
           "VIDEOFLIX_RESULT_FILE": str(tmp_path / "result")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "videoflix_transcoder", "ladder", "--source", str(sources.hd),
         "--dest", str(dest), "--rung", "360p:640x360", "--rung", "1080p:1920x1080",
         "--preset", "medium"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    assert proc.stdout is not None
    first = json.loads(proc.stdout.readline())  # encoding has started
    assert "progress" in first, first
    assert _processes_mentioning(str(scratch))  # ffmpeg is running on the scratch dir
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 143
    assert json.loads(out.splitlines()[-1]) == {"result": {"error": "terminated by SIGTERM"}}
    assert json.loads((tmp_path / "result").read_text()) == {"error": "terminated by SIGTERM"}
    assert not dest.exists()
    assert list(scratch.iterdir()) == []
    deadline = time.monotonic() + 5
    while _processes_mentioning(str(scratch)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _processes_mentioning(str(scratch)) == []


@pytest.mark.parametrize(
    ("name", "poster_size", "tile", "cues"),
    [
        ("short", (320, 240), (160, 120), 1),  # shorter than one storyboard interval
        ("portrait", (360, 640), (90, 160), 1),  # tiles and poster stay portrait
        ("black", (320, 240), (160, 120), 1),  # no bright frame: the plain pick is the poster
    ],
)
def test_thumbnail_of_short_and_portrait_sources(
    sources: Any, tx: Any, tmp_path: Path, name: str,
    poster_size: tuple[int, int], tile: tuple[int, int], cues: int,
) -> None:
    run = tx.transcoder("thumbnail", "--source", str(getattr(sources, name)),
                        "--dest", str(tmp_path))
    assert run.code == 0, run.stderr
    folder = tmp_path / "thumbnails"
    poster = tx.streams(folder / "poster.jpg")["video"]
    assert (poster["width"], poster["height"]) == poster_size
    sprite = tx.streams(folder / "sprite.jpg")["video"]
    assert (sprite["width"], sprite["height"]) == tile
    vtt = (folder / "storyboard.vtt").read_text()
    assert vtt.count("#xywh=") == cues
    assert f"#xywh=0,0,{tile[0]},{tile[1]}" in vtt
