"""The real CLI on real FFmpeg with local paths (embedded mode), outputs checked with ffprobe."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
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


# --- real-world pictures: portrait phones, HDR, interlaced, variable frame rate, 5.1 --------


@dataclass(frozen=True)
class Awkward:
    portrait: Path  # 720x1280 stored portrait (no rotation tag), 1 s, stereo
    pq: Path  # 1280x720 HEVC 10-bit BT.2020 PQ (an HDR10 phone clip), 1 s, no audio
    interlaced: Path  # 320x240 25i top field first, 1 s
    vfr: Path  # 320x240: 1 s at 30 fps then ~2 s at 10 fps
    surround: Path  # 320x240, a silent stereo commentary, then the default 5.1 track
    hlg: Path  # 640x360 HEVC 10-bit BT.2020 HLG (how iPhones record HDR), 1 s
    anamorphic: Path  # 720x576 with 64:45 pixels (16:9 PAL DVD): shown 1024x576, 1 s
    bt601: Path  # 640x480 orange, BT.601 matrix (as SD cameras and DVDs store it), BT.709 primaries


@pytest.fixture(scope="module")
def awkward(tx: Any, tmp_path_factory: pytest.TempPathFactory) -> Awkward:
    d = tmp_path_factory.mktemp("awkward")
    a = Awkward(d / "portrait.mp4", d / "pq.mp4", d / "interlaced.mp4", d / "vfr.mp4",
                d / "surround.mkv", d / "hlg.mp4", d / "anamorphic.mp4", d / "bt601.mp4")
    fast = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
    tx.ffmpeg("-f", "lavfi", "-i", "testsrc2=size=720x1280:rate=30:duration=1",
              "-f", "lavfi", "-i", "sine=duration=1", *fast, "-c:a", "aac", str(a.portrait))
    tx.ffmpeg("-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30", "-t", "1",
              "-c:v", "libx265", "-preset", "ultrafast", "-pix_fmt", "yuv420p10le",
              "-x265-params",
              "colorprim=bt2020:transfer=smpte2084:colormatrix=bt2020nc:log-level=error",
              "-color_primaries", "bt2020", "-color_trc", "smpte2084",
              "-colorspace", "bt2020nc", str(a.pq))
    # testsrc, not testsrc2: FFmpeg's idet calls even progressive testsrc2 interlaced.
    tx.ffmpeg("-f", "lavfi", "-i", "testsrc=size=320x240:rate=50", "-t", "1",
              "-vf", "interlace=scan=tff", *fast, "-flags", "+ildct+ilme",
              "-x264-params", "tff=1", str(a.interlaced))
    tx.ffmpeg("-f", "lavfi",
              "-i", "testsrc2=size=320x240:rate=30,setpts='if(lt(N,30),N/30,1+(N-30)/10)/TB'",
              "-t", "3", *fast, "-fps_mode", "passthrough", str(a.vfr))
    # Silent stereo commentary first; the default 5.1 track has its sound in the centre only,
    # which a downmix that drops the centre (or takes the first track) would lose.
    tx.ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30:duration=1",
              "-f", "lavfi", "-i", "anullsrc=channel_layout=stereo:sample_rate=48000",
              "-f", "lavfi", "-i", "sine=frequency=500:duration=1", *fast,
              "-filter_complex", "[2:a]pan=5.1|FC=c0[surround]",
              "-map", "0:v", "-map", "1:a", "-map", "[surround]", "-t", "1", "-c:a", "aac",
              "-disposition:a:0", "0", "-disposition:a:1", "default", str(a.surround))
    tx.ffmpeg("-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30", "-t", "1",
              "-c:v", "libx265", "-preset", "ultrafast", "-pix_fmt", "yuv420p10le",
              "-x265-params",
              "colorprim=bt2020:transfer=arib-std-b67:colormatrix=bt2020nc:log-level=error",
              "-color_primaries", "bt2020", "-color_trc", "arib-std-b67",
              "-colorspace", "bt2020nc", str(a.hlg))
    tx.ffmpeg("-f", "lavfi", "-i", "testsrc2=size=720x576:rate=25:duration=1",
              "-vf", "setsar=64/45", *fast, str(a.anamorphic))
    tx.ffmpeg("-f", "lavfi", "-i", f"color=c={ORANGE}:size=640x480:rate=25:duration=1",
              "-vf", "scale=out_color_matrix=bt601:out_range=tv", *fast,
              "-colorspace", "smpte170m", "-color_primaries", "bt709", "-color_trc", "bt709",
              str(a.bt601))
    return a


ORANGE = "0xC04020"


def _rgb(file: Path, matrix: str, x: int, y: int) -> tuple[int, ...]:
    """One pixel of the first frame, decoded to RGB with the given YUV matrix."""
    data = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(file), "-vf",
         f"crop=2:2:{x}:{y},scale=in_color_matrix={matrix}:in_range=tv,format=rgb24",
         "-frames:v", "1", "-f", "rawvideo", "-"],
        capture_output=True, timeout=60, check=True,
    ).stdout
    return tuple(data[:3])


def test_bt601_source_is_converted_to_bt709(awkward: Awkward, tx: Any, tmp_path: Path) -> None:
    run = tx.transcoder("rendition", "--source", str(awkward.bt601), "--dest", str(tmp_path),
                        "--name", "360p", "--width", "480", "--height", "360")
    assert run.code == 0, run.stderr
    out = tmp_path / "360p" / "video.mp4"
    assert _colour(tx, out) == ("yuv420p", "bt709", "bt709", "bt709", "tv")
    source = _rgb(awkward.bt601, "bt601", 200, 200)
    assert _distance(source, (0xC0, 0x40, 0x20)) <= 3
    shown = _rgb(out, "bt709", 150, 150)  # what a player shows for a BT.709-tagged file
    assert _distance(source, shown) <= 3
    # Merely re-tagging the BT.601 samples as BT.709 would shift the colour visibly.
    assert _distance(source, _rgb(out, "bt601", 150, 150)) > 6


def _distance(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    return max(abs(x - y) for x, y in zip(a, b, strict=True))


def _colour(tx: Any, file: Path) -> tuple[str, str, str, str, str]:
    v = tx.streams(file)["video"]
    return (v["pix_fmt"], v.get("color_primaries"), v.get("color_transfer"),
            v.get("color_space"), v.get("color_range"))


def test_portrait_phone_video_gets_portrait_rungs(awkward: Awkward, tx: Any,
                                                  tmp_path: Path) -> None:
    sizes = {"120p": (120, 214), "360p": (360, 640), "720p": (720, 1280)}
    run = tx.transcoder("ladder", "--source", str(awkward.portrait), "--dest", str(tmp_path),
                        *[x for n, (w, h) in sizes.items() for x in ("--rung", f"{n}:{w}x{h}")])
    assert run.code == 0, run.stderr
    assert {r["name"]: (r["width"], r["height"]) for r in run.result["renditions"]} == sizes
    for name, size in sizes.items():
        check_rendition(tx, tmp_path / name / "video.mp4", size, 1.0, 30.0, audio=True)
    # The failure: 1080p of a 720-wide picture is an upscale, refused with a reason.
    run = tx.transcoder("rendition", "--source", str(awkward.portrait), "--dest",
                        str(tmp_path / "no"), "--name", "1080p", "--width", "1080",
                        "--height", "1920")
    assert run.code == 2 and "refusing to upscale" in run.result["error"]


def test_pq_hdr_source_is_tone_mapped_to_bt709_sdr(awkward: Awkward, tx: Any,
                                                   tmp_path: Path) -> None:
    probe = tx.transcoder("probe", "--source", str(awkward.pq))
    assert probe.code == 0 and probe.result["videoCodec"] == "hevc"
    run = tx.transcoder("rendition", "--source", str(awkward.pq), "--dest", str(tmp_path),
                        "--name", "360p", "--width", "640", "--height", "360")
    assert run.code == 0, run.stderr
    out = tmp_path / "360p" / "video.mp4"
    assert _colour(tx, out) == ("yuv420p", "bt709", "bt709", "bt709", "tv")
    check_rendition(tx, out, (640, 360), 1.0, 30.0, audio=False)
    thumbs = tx.transcoder("thumbnail", "--source", str(awkward.pq), "--dest", str(tmp_path))
    assert thumbs.code == 0, thumbs.stderr
    poster = tx.streams(tmp_path / "thumbnails" / "poster.jpg")["video"]
    assert (poster["width"], poster["height"], poster["pix_fmt"]) == (1280, 720, "yuvj420p")
    assert 40 < tx.mean_luma(tmp_path / "thumbnails" / "poster.jpg") < 130


def _pq_code(nits: float) -> int:
    """SMPTE ST 2084: the 10-bit limited-range code value that means `nits`."""
    m1, m2, c1, c2, c3 = 2610 / 16384, 2523 / 32, 3424 / 4096, 2413 / 128, 2392 / 128
    y = (nits / 10000) ** m1
    return round(64 + 876 * float(((c1 + c2 * y) / (1 + c3 * y)) ** m2))


def _sdr_luma(nits: float, peak_nits: float) -> float:
    """The 8-bit luma an SDR display needs for a grey of `nits` after hable tone-mapping.

    Hable's filmic curve normalised so `peak_nits` is SDR white (100 nits = 1.0), then the
    BT.1886 display's inverse EOTF (gamma 2.4) into limited range.
    """
    def hable(x: float) -> float:
        a, b, c, d, e, f = 0.15, 0.5, 0.1, 0.2, 0.02, 0.3
        return (x * (a * x + c * b) + d * e) / (x * (a * x + b) + d * f) - e / f

    light = hable(nits / 100) / hable(peak_nits / 100)
    return 16 + 219 * float(light ** (1 / 2.4))


GREYS_NITS = (5.0, 100.0, 1000.0)  # a shadow, SDR reference white, a phone's highlight


@pytest.mark.parametrize(("max_cll", "peak_nits"), [(None, 1000.0), (400, 400.0)])
def test_pq_greys_land_on_the_tone_curve_for_the_sources_own_peak(
    tx: Any, tmp_path: Path, max_cll: int | None, peak_nits: float
) -> None:
    # Three bars of known brightness. Untagged, the peak is taken as 1000 nits, whatever the
    # FFmpeg build would guess; tagged MaxCLL is obeyed. A re-tag without tone-mapping shows
    # the codes as SDR (71, 127, 181 here), never the curve's (59, 151, 235).
    codes = [_pq_code(n) for n in GREYS_NITS]
    bars = f"if(lt(X,W/3),{codes[0]},if(lt(X,2*W/3),{codes[1]},{codes[2]}))"
    light = f":max-cll={max_cll},{max_cll // 2}" if max_cll else ""
    source = tmp_path / "bars.mp4"
    tx.ffmpeg("-f", "lavfi", "-i", "color=c=black:s=1280x720:r=30:d=1,format=yuv420p10le,"
              f"geq=lum='{bars}':cb=512:cr=512",  # quoted: the commas are geq's, not the graph's
              "-c:v", "libx265", "-preset", "ultrafast", "-pix_fmt", "yuv420p10le",
              "-x265-params", "colorprim=bt2020:transfer=smpte2084:colormatrix=bt2020nc"
              f"{light}:log-level=error", "-color_primaries", "bt2020",
              "-color_trc", "smpte2084", "-colorspace", "bt2020nc", str(source))
    run = tx.transcoder("rendition", "--source", str(source), "--dest", str(tmp_path),
                        "--name", "360p", "--width", "640", "--height", "360")
    assert run.code == 0, run.stderr
    out = tmp_path / "360p" / "video.mp4"
    for third, nits in enumerate(GREYS_NITS):
        patch = f"movie={out},crop=50:50:{third * 640 // 3 + 80}:155,signalstats"
        luma = tx.ffprobe(patch, "-f", "lavfi", "-read_intervals", "%+#1",
                          "-show_entries", "frame_tags=lavfi.signalstats.YAVG")
        found = float(luma["frames"][0]["tags"]["lavfi.signalstats.YAVG"])
        if nits <= peak_nits:
            assert abs(found - _sdr_luma(nits, peak_nits)) <= 3, (nits, found)
        else:  # brighter than the tag claims: past white, in the headroom players show as white
            assert found >= 235, (nits, found)


def test_hlg_hdr_source_is_tone_mapped_to_bt709_sdr(awkward: Awkward, tx: Any,
                                                    tmp_path: Path) -> None:
    assert tx.streams(awkward.hlg)["video"]["color_transfer"] == "arib-std-b67"
    run = tx.transcoder("rendition", "--source", str(awkward.hlg), "--dest", str(tmp_path),
                        "--name", "120p", "--width", "214", "--height", "120")
    assert run.code == 0, run.stderr
    out = tmp_path / "120p" / "video.mp4"
    assert _colour(tx, out) == ("yuv420p", "bt709", "bt709", "bt709", "tv")
    check_rendition(tx, out, (214, 120), 1.0, 30.0, audio=False)


def test_anamorphic_source_gets_square_pixels_at_its_displayed_size(
    awkward: Awkward, tx: Any, tmp_path: Path
) -> None:
    probe = tx.transcoder("probe", "--source", str(awkward.anamorphic))
    assert (probe.result["width"], probe.result["height"]) == (1024, 576)
    run = tx.transcoder("rendition", "--source", str(awkward.anamorphic), "--dest",
                        str(tmp_path), "--name", "360p", "--width", "640", "--height", "360")
    assert run.code == 0, run.stderr
    video = tx.streams(tmp_path / "360p" / "video.mp4")["video"]
    assert (video["width"], video["height"]) == (640, 360)
    assert video.get("sample_aspect_ratio", "1:1") == "1:1"


def _idet(tx: Any, file: Path) -> dict[str, int]:
    proc = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-i", str(file), "-vf", "idet", "-f", "null", "-"],
        capture_output=True, text=True, timeout=60, check=True,
    )
    line = next(x for x in proc.stderr.splitlines() if "Multi frame detection" in x)
    return {k: int(v) for k, v in re.findall(r"(TFF|BFF|Progressive):\s*(\d+)", line)}


def test_interlaced_source_comes_out_progressive(awkward: Awkward, tx: Any,
                                                tmp_path: Path) -> None:
    assert tx.streams(awkward.interlaced)["video"]["field_order"] == "tt"
    assert _idet(tx, awkward.interlaced)["TFF"] >= 20  # combing the detector sees
    run = tx.transcoder("rendition", "--source", str(awkward.interlaced), "--dest",
                        str(tmp_path), "--name", "240p", "--width", "320", "--height", "240")
    assert run.code == 0, run.stderr
    out = tmp_path / "240p" / "video.mp4"
    assert tx.streams(out)["video"].get("field_order", "progressive") == "progressive"
    found = _idet(tx, out)
    assert found["TFF"] + found["BFF"] <= 1, found  # no combing left
    check_rendition(tx, out, (320, 240), 1.0, 25.0, audio=False)  # one frame per frame


def test_variable_frame_rate_keeps_its_frames_and_duration(awkward: Awkward, tx: Any,
                                                          tmp_path: Path) -> None:
    def frames(file: Path) -> tuple[int, float]:
        v = tx.ffprobe(file, "-select_streams", "v:0", "-count_frames",
                       "-show_entries", "stream=nb_read_frames,duration")["streams"][0]
        return int(v["nb_read_frames"]), float(v["duration"])

    source_frames, source_duration = frames(awkward.vfr)
    run = tx.transcoder("rendition", "--source", str(awkward.vfr), "--dest", str(tmp_path),
                        "--name", "120p", "--width", "160", "--height", "120")
    assert run.code == 0, run.stderr
    out = tmp_path / "120p" / "video.mp4"
    out_frames, out_duration = frames(out)
    assert out_frames == source_frames  # no duplicated frames up to a nominal 30 fps
    assert abs(out_duration - source_duration) <= 1 / 10  # within one (long) frame
    # Keyframes still on the 2 s grid.
    assert [round(t) for t in tx.keyframe_times(out)] == [0, 2]


def test_default_51_track_is_downmixed_to_stereo(awkward: Awkward, tx: Any,
                                                 tmp_path: Path) -> None:
    run = tx.transcoder("rendition", "--source", str(awkward.surround), "--dest", str(tmp_path),
                        "--name", "120p", "--width", "160", "--height", "120")
    assert run.code == 0, run.stderr
    streams = tx.ffprobe(tmp_path / "120p" / "video.mp4", "-show_streams")["streams"]
    audio = [s for s in streams if s["codec_type"] == "audio"]
    assert len(audio) == 1 and audio[0]["channels"] == 2
    # Both stereo channels carry the centre: the default 5.1 track, downmixed, not dropped.
    for channel in ("c0", "c1"):
        assert _mean_volume(tmp_path / "120p" / "video.mp4", channel) > -30.0


def _mean_volume(file: Path, channel: str) -> float:
    proc = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-i", str(file), "-map", "0:a",
         "-af", f"pan=mono|c0={channel},volumedetect", "-f", "null", "-"],
        capture_output=True, text=True, timeout=60, check=True,
    )
    found = re.search(r"mean_volume: (-?[\d.]+|-inf) dB", proc.stderr)
    assert found is not None, proc.stderr
    return float(found[1])


def test_a_step_whose_reader_died_still_finishes_and_stores_its_result(
    sources: Any, tmp_path: Path
) -> None:
    """The embedded server is killed under a running step: its stdout and stderr pipes break.
    The step is not lost with them: it finishes, exits 0 and stores its result (`--result-to`),
    where the restarted server finds it."""
    dest, stored = tmp_path / "dest", tmp_path / "results" / "rendition-120p.json"
    env = {**os.environ, "VIDEOFLIX_RESULT_FILE": str(tmp_path / "result"),
           "VIDEOFLIX_CPU_LIMIT": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "videoflix_transcoder", "rendition", "--source", str(sources.sd),
         "--dest", str(dest), "--name", "120p", "--width", "214", "--height", "120",
         "--result-to", str(stored)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before the first progress line
    proc.stderr.close()
    assert proc.wait(timeout=120) == 0
    result = json.loads(stored.read_text())
    assert result == json.loads((tmp_path / "result").read_text())
    assert [r["file"] for r in result["renditions"]] == [str(dest / "120p" / "video.mp4")]
    assert (dest / "120p" / "video.mp4").stat().st_size == result["renditions"][0]["bytes"]
