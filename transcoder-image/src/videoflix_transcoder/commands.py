"""The steps: probe, rendition(s), thumbnail. Each returns the result dict of the contract.

The chunked steps (chunk, audio, assemble) are in `chunked.py`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from videoflix_transcoder import plan
from videoflix_transcoder.errors import BadInput, TransientError
from videoflix_transcoder.mp4 import Mp4LayoutError, hls_playlist, read_layout
from videoflix_transcoder.probe import (
    ProbeResult,
    check_coverage,
    codecs_of,
    decode_check_argv,
    demux_argv,
    ffprobe_argv,
    frames_read,
    hdr_peak_nits,
    parse_probe,
)
from videoflix_transcoder.runner import FfmpegFailed, Progress, run_ffmpeg, run_json
from videoflix_transcoder.storage import Storage, parse_uri

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Context:
    storage: Storage
    scratch: Path
    threads: int
    on_progress: Callable[[Progress], None] | None = None


def probe_file(path: Path) -> ProbeResult:
    """ffprobe, a tiny decode and a demux pass: metadata alone can lie."""
    report = run_json(ffprobe_argv(str(path)))
    result = parse_probe(report, path.stat().st_size)
    decoded = run_json(decode_check_argv(str(path), result.video_index))
    if frames_read(decoded) == 0:
        raise BadInput(f"source video cannot be decoded ({result.video_codec})")
    result = dataclasses.replace(result, hdr_peak_nits=hdr_peak_nits(decoded, report))
    check_coverage(
        result.video_duration_seconds or result.duration_seconds,
        demuxed_seconds(path, result.video_index),
    )
    return result


def demuxed_seconds(path: Path, video_index: int) -> float:
    reached = 0.0

    def note(progress: Progress) -> None:
        nonlocal reached
        reached = max(reached, progress.out_seconds)

    # A read error is what the coverage check then reports, with a clearer reason.
    with contextlib.suppress(FfmpegFailed):
        run_ffmpeg(demux_argv(str(path), video_index), on_progress=note, throttle=False)
    return reached


def probe(ctx: Context, source: str) -> dict[str, Any]:
    path = ctx.storage.fetch(parse_uri(source), ctx.scratch)
    return probe_file(path).to_result()


def renditions(
    ctx: Context,
    source: str,
    dest: str,
    rungs: list[plan.Rung],
    *,
    preset: str = plan.DEFAULT_PRESET,
) -> dict[str, Any]:
    """Encode the rungs in one FFmpeg process and publish `<name>/video.mp4` + `index.m3u8`.

    The sizes are the planner's; a rung that would upscale or distort refuses the whole request.
    """
    dest_location = parse_uri(dest, prefix=True)
    path = ctx.storage.fetch(parse_uri(source), ctx.scratch)
    info = probe_file(path)
    work = ctx.scratch / "out"
    files = [work / r.name / "video.mp4" for r in rungs]
    outputs = plan.plan_outputs(info, rungs, [str(f) for f in files])
    for file in files:
        file.parent.mkdir(parents=True, exist_ok=True)
    argv = plan.encode_argv(str(path), info, outputs, threads=ctx.threads, preset=preset)
    started = time.monotonic()
    run_ffmpeg(argv, duration_seconds=info.duration_seconds, on_progress=ctx.on_progress)
    encode_seconds = round(time.monotonic() - started, 3)

    finished = [finish_rendition(out.rung.name, file) for out, file in zip(outputs, files,
                                                                           strict=True)]
    keys = ctx.storage.publish(
        [(f, f"{o.rung.name}/{f.name}") for o, f in zip(outputs, files, strict=True)]
        + [(p, f"{o.rung.name}/{p.name}") for o, (p, _) in zip(outputs, finished, strict=True)],
        dest_location,
    )
    count = len(outputs)
    return {
        "renditions": [
            rendition_result(out.rung.name, file, detail, encode_seconds, keys[i],
                             keys[count + i])
            for i, (out, file, (_, detail)) in enumerate(zip(outputs, files, finished,
                                                              strict=True))
        ]
    }


@dataclass(frozen=True)
class Written:
    """What a finished rung file is (probed), not what was asked: a mismatch shows."""

    probe: ProbeResult
    codecs: str | None
    peak_bitrate: int


def finish_rendition(name: str, file: Path) -> tuple[Path, Written]:
    """Write the byte-range playlist beside a rung's file and probe what was written.

    Shared by `renditions` and the chunked `assemble`: both publish the same layout.
    """
    try:
        layout = read_layout(file)
    except Mp4LayoutError as exc:
        raise TransientError(f"{name}: unexpected MP4 layout: {exc}") from exc
    playlist = file.with_name("index.m3u8")
    playlist.write_text(hls_playlist(layout, file.name))
    report = run_json(ffprobe_argv(str(file)))
    peak = max((size * 8 / s for _, size, s in layout.segments if s > 0), default=0.0)
    return playlist, Written(parse_probe(report, file.stat().st_size), codecs_of(report),
                             int(peak))


def rendition_result(
    name: str, file: Path, written: Written, encode_seconds: float, file_key: str,
    playlist_key: str,
) -> dict[str, Any]:
    detail = written.probe
    return {
        "name": name,
        "width": detail.width,
        "height": detail.height,
        "bitrate": int(file.stat().st_size * 8 / max(detail.duration_seconds, 1e-3)),
        "peakBitrate": written.peak_bitrate,
        "codecs": written.codecs,
        "bytes": file.stat().st_size,
        "durationSeconds": round(detail.duration_seconds, 3),
        "encodeSeconds": encode_seconds,
        "file": file_key,
        "playlist": playlist_key,
    }


def thumbnail(ctx: Context, source: str, dest: str) -> dict[str, Any]:
    dest_location = parse_uri(dest, prefix=True)
    path = ctx.storage.fetch(parse_uri(source), ctx.scratch)
    info = probe_file(path)
    work = ctx.scratch / "thumbnails"
    work.mkdir(parents=True, exist_ok=True)

    poster = work / "poster.jpg"
    for skip_dark in (True, False):  # a video that is dark throughout still gets a poster
        run_ffmpeg(plan.poster_argv(
            str(path), info, str(poster), skip_dark=skip_dark, threads=ctx.threads
        ))
        if poster.is_file() and poster.stat().st_size > 0:
            break
    else:
        raise TransientError("ffmpeg wrote no poster frame")

    board = plan.storyboard_plan(info)
    sprite = work / "sprite.jpg"
    run_ffmpeg(plan.sprite_argv(str(path), info, board, str(sprite), threads=ctx.threads))
    if not sprite.is_file():
        raise TransientError("ffmpeg wrote no storyboard sprite")
    vtt = work / "storyboard.vtt"
    vtt.write_text(plan.storyboard_vtt(board, info.duration_seconds, sprite.name))

    keys = ctx.storage.publish(
        [(poster, "thumbnails/poster.jpg"), (sprite, "thumbnails/sprite.jpg"),
         (vtt, "thumbnails/storyboard.vtt")],
        dest_location,
    )
    return {"poster": keys[0], "sprite": keys[1], "vtt": keys[2]}
