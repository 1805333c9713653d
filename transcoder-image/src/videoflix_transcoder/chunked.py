"""Chunked renditions: encode one chunk of the timeline, the audio once, then join them.

A long source is cut on the 2 s keyframe grid (the plan is `videoflix_core.chunks`; the
transcoder takes its start times and never re-decides them). Each index of an Indexed Job
runs `chunk`: it decodes from just before its start, keeps exactly the frames of
[start, next start), and encodes every rung of that window from one decode (video only).
`audio` encodes the whole audio track once per audio bitrate (per-chunk AAC would click at
every join: each encoder primes anew). `assemble` joins one rung's chunks and its audio into
the one fragmented MP4 + byte-range playlist that an unchunked rendition publishes, moving
bytes only: decode times shifted to the chunk's place on the timeline (FFmpeg's muxer starts
every file at 0), audio dealt out to the fragments as FFmpeg interleaves it.

Intermediate keys under the video's prefix: `<work>/<rung>/<index:05d>.mp4` and
`<work>/audio/<kbps>k.mp4`, `<work>` being `--work` (default `chunks`; the operator names one
folder per generation and spec, `chunks/<generation>-<spec-hash>`, so a superseded run's late
pods can never overwrite the chunks of the current one).
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

from videoflix_transcoder import plan
from videoflix_transcoder.commands import (
    Context,
    finish_rendition,
    probe_file,
    rendition_result,
)
from videoflix_transcoder.errors import BadInput, TransientError
from videoflix_transcoder.fmp4 import (
    Fragment,
    TrackFile,
    TrackRun,
    moov_box,
    read_track_file,
    renumber,
    split_by_time,
    write_file,
)
from videoflix_transcoder.mp4 import Mp4LayoutError
from videoflix_transcoder.probe import ProbeResult, input_args
from videoflix_transcoder.runner import run_ffmpeg
from videoflix_transcoder.storage import Location, parse_uri

COMMANDS = frozenset({"chunk", "audio", "assemble"})
# Decoded before a chunk's start and thrown away after the filters that look back (bwdif
# needs the previous field): the first kept frame is filtered exactly as in one long run.
PREROLL_SECONDS = 1.0
AUDIO_FRAGMENT_MICROSECONDS = 10_000_000  # the audio file's own fragments: assemble re-deals
# Only FFmpeg's own flags minus frag_keyframe: an audio-only file has no video keyframes.
AUDIO_MP4_FLAGS = "+delay_moov+default_base_moof+global_sidx+cmaf"
VIDEO_TRACK_ID, AUDIO_TRACK_ID = 1, 2  # as in an unchunked rendition


DEFAULT_WORK = "chunks"
_WORK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}(/[A-Za-z0-9][A-Za-z0-9_.-]{0,63}){0,3}$")


def work_folder(value: str) -> str:
    """`--work`: a relative folder under `--dest` (no `..`, no absolute path, no empty part)."""
    if not _WORK.match(value) or any(part.startswith("..") for part in value.split("/")):
        raise argparse.ArgumentTypeError(f"bad --work {value!r}: e.g. chunks/3-1a2b3c4d")
    return value


def chunk_key(rung: str, index: int, work: str = DEFAULT_WORK) -> str:
    return f"{work}/{rung}/{index:05d}.mp4"


def audio_key(kbps: int, work: str = DEFAULT_WORK) -> str:
    return f"{work}/audio/{kbps}k.mp4"


# --- pure: windows and command lines ---------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """One chunk on the output timeline: [start, end), end None for the last (to the end)."""

    index: int
    start: Fraction
    end: Fraction | None

    @property
    def seek(self) -> Fraction:
        """Where decoding starts: PREROLL_SECONDS before the chunk (never before 0)."""
        return max(Fraction(0), self.start - Fraction(PREROLL_SECONDS))


def parse_starts(text: str) -> list[Fraction]:
    """`--starts 0,20,40`: every chunk's start in seconds, increasing, the first 0."""
    try:
        starts = [Fraction(part.strip()) for part in text.split(",")]
    except (ValueError, ZeroDivisionError) as exc:
        raise BadInput(f"bad --starts {text!r}: expected seconds like 0,20,40") from exc
    if not starts or starts[0] != 0 or any(b <= a for a, b in itertools.pairwise(starts)):
        raise BadInput(f"bad --starts {text!r}: must start at 0 and increase")
    if any(s % plan.KEYFRAME_SECONDS for s in starts):
        raise BadInput(
            f"bad --starts {text!r}: chunks start on the {plan.KEYFRAME_SECONDS} s keyframe grid"
        )
    return starts


def window(starts: Sequence[Fraction], index: int) -> Window:
    if not 0 <= index < len(starts):
        raise BadInput(f"chunk index {index} is outside the {len(starts)} chunks of --starts")
    end = starts[index + 1] if index + 1 < len(starts) else None
    return Window(index, starts[index], end)


def _seconds(value: Fraction) -> str:
    return f"{float(value):.6f}"


def chunk_argv(
    source_path: str,
    probe: ProbeResult,
    outputs: list[plan.Output],
    win: Window,
    *,
    threads: int = 0,
    preset: str = plan.DEFAULT_PRESET,
) -> list[str]:
    """Decode once from just before the window, encode exactly its frames for every rung.

    `-ss` before the input seeks accurately (frames before it are decoded and dropped) and
    shifts timestamps by the same amount as an unchunked run's, so `trim` keeps exactly the
    frames whose output time is in [start, end) and `setpts` makes the chunk start at 0:
    the forced keyframes (`gte(t,n_forced*2)`) then land on the same frames as in one long
    run, because start is on the grid. Video only: the audio is encoded once (`audio_argv`).
    """
    offset = win.start - win.seek
    trim = f"trim=start={_seconds(offset)}"
    if win.end is not None:
        trim += f":end={_seconds(win.end - win.seek)}"
    head = [*plan.deinterlace_filters(probe), trim]
    if offset:
        head.append(f"setpts=PTS-{_seconds(offset)}/TB")
    labels = [f"v{i}" for i in range(len(outputs))]
    head.append(f"split={len(outputs)}" if len(outputs) > 1 else "null")
    graph = ";".join([
        f"[0:{probe.video_index}]{','.join(head)}" + "".join(f"[{x}]" for x in labels),
        *(
            f"[{x}]{','.join(plan.colour_filters(probe, o.width, o.height))}[o{x}]"
            for x, o in zip(labels, outputs, strict=True)
        ),
    ])
    argv = [
        "ffmpeg", "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error",
        "-progress", "pipe:1", "-y",
    ]
    if threads:
        argv += ["-threads", str(threads), "-filter_complex_threads", str(threads)]
    if win.seek:
        argv += ["-ss", _seconds(win.seek)]
    argv += [*input_args(), "-i", source_path, "-filter_complex", graph]
    peak_fps = max(probe.fps or 0.0, probe.max_fps or 0.0) or None
    for label, out in zip(labels, outputs, strict=True):
        argv += ["-map", f"[o{label}]"]
        # The unchunked rung's exact video settings (see plan.encode_argv).
        argv += plan._video_codec_args(out, peak_fps, threads, preset)
        argv += ["-fps_mode", "vfr", *plan.BT709_TAGS, "-an", "-sn", "-dn"]
        argv += [
            "-map_metadata", "-1", "-map_chapters", "-1", "-max_muxing_queue_size", "4096",
            "-movflags", plan.MP4_FLAGS, "-use_editlist", "1", "-f", "mp4", out.path,
        ]
    return argv


def audio_argv(
    source_path: str, probe: ProbeResult, outputs: Sequence[tuple[int, str]], *, threads: int = 0
) -> list[str]:
    """The whole audio track, once per (kbit/s, path): the unchunked rungs' AAC settings."""
    if probe.audio_index is None:
        raise ValueError("source has no audio")
    argv = [
        "ffmpeg", "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error",
        "-progress", "pipe:1", "-y",
    ]
    if threads:
        argv += ["-threads", str(threads)]
    argv += [*input_args(), "-i", source_path]
    for kbps, path in outputs:
        argv += [
            "-map", f"0:{probe.audio_index}", "-vn", "-sn", "-dn",
            "-c:a", "aac", "-b:a", f"{kbps}k", "-ac", "2", "-ar", str(plan.AUDIO_SAMPLE_RATE),
            "-map_metadata", "-1", "-map_chapters", "-1",
            "-movflags", AUDIO_MP4_FLAGS, "-frag_duration", str(AUDIO_FRAGMENT_MICROSECONDS),
            "-use_editlist", "1", "-f", "mp4", path,
        ]
    return argv


# --- pure: the join ---------------------------------------------------------------------------


def join_video(chunks: Sequence[TrackFile], starts: Sequence[Fraction]) -> list[TrackRun]:
    """Every video fragment of the chunks, decode times moved to the chunk's place.

    A chunk's presentation time t is the rung's start + t; with each file's edit-list shift
    that gives decode time = local decode time + start·timescale + shift(first) - shift(own).
    The last frame of each chunk lasts until the next chunk's first frame (FFmpeg's muxer
    gave it the encoder's guess), so the decode timeline has no gap or overlap at a join.
    """
    if len(chunks) != len(starts):
        raise Mp4LayoutError(f"{len(chunks)} chunk files for {len(starts)} chunks")
    first = chunks[0].track("vide")
    runs: list[TrackRun] = []
    for i, (chunk, start) in enumerate(zip(chunks, starts, strict=True)):
        track = chunk.track("vide")
        if track.timescale != first.timescale:
            raise Mp4LayoutError(f"chunk {i}: timescale {track.timescale} != {first.timescale}")
        shift = start * track.timescale
        if shift.denominator != 1:
            raise Mp4LayoutError(f"chunk {i}: {start} s is not on the {track.timescale} clock")
        delta = int(shift) + first.shift - track.shift
        own = [
            TrackRun(VIDEO_TRACK_ID, run.decode_time + delta, run.samples, run.source)
            for fragment in chunk.fragments for run in fragment.runs
            if run.track_id == track.track_id
        ]
        if not own or not own[0].samples or not own[0].samples[0].sync:
            raise Mp4LayoutError(f"chunk {i} does not start with a keyframe")
        if runs:
            _meet(runs[-1], own[0].decode_time, i)
        runs += own
    return runs


def _meet(last: TrackRun, next_decode_time: int, index: int) -> None:
    """Make the run's last sample end where the next chunk's first one starts."""
    dts_last = last.decode_time + sum(s.duration for s in last.samples[:-1])
    need = next_decode_time - dts_last
    frame = last.samples[-1].duration
    # More than a frame off means frames were lost or doubled at the join: refuse to publish.
    if need <= 0 or abs(need - frame) > max(frame, 1):
        raise Mp4LayoutError(
            f"join before chunk {index}: last frame would last {need} ticks (a frame is {frame})"
        )
    if need != frame:
        last.samples[-1] = replace(last.samples[-1], duration=need)


def assemble_file(
    target: Path, chunk_files: Sequence[Path], starts: Sequence[Fraction], audio: Path | None
) -> None:
    """Join one rung's chunk files (and the audio file) into the published layout."""
    chunks = [read_track_file(p) for p in chunk_files]
    first = chunks[0]
    video = renumber(first.track("vide"), VIDEO_TRACK_ID)
    video_runs = join_video(chunks, starts)
    tracks = [video]
    audio_runs: list[TrackRun | None] = [None] * len(video_runs)
    if audio is not None:
        audio_file = read_track_file(audio)
        sound = audio_file.track("soun")
        bounds = [Fraction(r.decode_time - video.shift, video.timescale) for r in video_runs]
        dealt = split_by_time(
            list(audio_file.samples(sound.track_id)), renumber(sound, AUDIO_TRACK_ID), bounds,
            audio,
        )
        tracks.append(renumber(sound, AUDIO_TRACK_ID))
        audio_runs = [run if run.samples else None for run in dealt]
    fragments = [
        Fragment([v] if a is None else [v, a])
        for v, a in zip(video_runs, audio_runs, strict=True)
    ]
    write_file(target, first.ftyp, moov_box(first.mvhd, tracks, first.udta), tracks, fragments)


# --- steps -----------------------------------------------------------------------------------


def encode_chunk(
    ctx: Context, source: str, dest: str, rungs: list[plan.Rung], starts: Sequence[Fraction],
    index: int, *, preset: str = plan.DEFAULT_PRESET, work: str = DEFAULT_WORK,
) -> dict[str, Any]:
    """Index `index`: every rung of its window from one decode, `chunks/<rung>/<index>.mp4`."""
    win = window(starts, index)
    dest_location = parse_uri(dest, prefix=True)
    path = ctx.storage.fetch(parse_uri(source), ctx.scratch)
    info = probe_file(path)
    if win.start >= Fraction(info.duration_seconds):
        raise BadInput(f"chunk {index} starts at {float(win.start):g} s, after the source ends")
    local = ctx.scratch / "chunks"
    files = [local / r.name / f"{index:05d}.mp4" for r in rungs]
    outputs = plan.plan_outputs(info, rungs, [str(f) for f in files])
    for file in files:
        file.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    end = info.duration_seconds if win.end is None else float(win.end)
    run_ffmpeg(
        chunk_argv(str(path), info, outputs, win, threads=ctx.threads, preset=preset),
        duration_seconds=end - float(win.start), on_progress=ctx.on_progress,
    )
    encode_seconds = round(time.monotonic() - started, 3)
    frames = {}
    for rung, file in zip(rungs, files, strict=True):
        try:
            written = read_track_file(file)
        except (Mp4LayoutError, OSError) as exc:
            raise TransientError(f"{rung.name}: chunk {index}: unexpected MP4: {exc}") from exc
        frames[rung.name] = sum(1 for _ in written.samples(written.track("vide").track_id))
        if frames[rung.name] == 0:
            raise TransientError(f"{rung.name}: chunk {index} has no frames")
    keys = ctx.storage.publish(
        [(f, chunk_key(r.name, index, work)) for r, f in zip(rungs, files, strict=True)],
        dest_location,
    )
    return {"chunk": {
        "index": index, "start": float(win.start),
        "end": None if win.end is None else float(win.end),
        "encodeSeconds": encode_seconds,
        "rungs": [
            {"name": r.name, "frames": frames[r.name], "file": key}
            for r, key in zip(rungs, keys, strict=True)
        ],
    }}


def encode_audio(
    ctx: Context, source: str, dest: str, bitrates: Sequence[int], work: str = DEFAULT_WORK
) -> dict[str, Any]:
    """The whole audio track once per distinct bitrate; `{"audio": []}` for a silent source."""
    dest_location = parse_uri(dest, prefix=True)
    path = ctx.storage.fetch(parse_uri(source), ctx.scratch)
    info = probe_file(path)
    if info.audio_index is None:
        return {"audio": []}
    kbps = sorted(set(bitrates))
    local = ctx.scratch / "audio"
    local.mkdir(parents=True, exist_ok=True)
    files = [local / f"{k}k.mp4" for k in kbps]
    started = time.monotonic()
    run_ffmpeg(
        audio_argv(str(path), info, list(zip(kbps, map(str, files), strict=True)),
                   threads=ctx.threads),
        duration_seconds=info.duration_seconds, on_progress=ctx.on_progress,
    )
    encode_seconds = round(time.monotonic() - started, 3)
    keys = ctx.storage.publish(
        [(f, audio_key(k, work)) for k, f in zip(kbps, files, strict=True)], dest_location
    )
    return {"audio": [
        {"bitrate": k, "file": key, "encodeSeconds": encode_seconds}
        for k, key in zip(kbps, keys, strict=True)
    ]}


def assemble(
    ctx: Context, dest: str, name: str, starts: Sequence[Fraction], audio_kbps: int | None,
    work: str = DEFAULT_WORK,
) -> dict[str, Any]:
    """Join `chunks/<name>/*` (+ the audio) into `<name>/video.mp4` + `index.m3u8`: I/O only."""
    dest_location = parse_uri(dest, prefix=True)
    inputs = ctx.scratch / "in"
    started = time.monotonic()
    chunk_files = [
        _fetch(ctx, dest_location, chunk_key(name, i, work), inputs / f"{name}-{i:05d}")
        for i in range(len(starts))
    ]
    audio = None
    if audio_kbps is not None:
        audio = _fetch(ctx, dest_location, audio_key(audio_kbps, work), inputs / "audio")
    local = ctx.scratch / "out" / name
    local.mkdir(parents=True, exist_ok=True)
    file = local / "video.mp4"
    try:
        assemble_file(file, chunk_files, starts, audio)
    except Mp4LayoutError as exc:
        raise TransientError(f"{name}: cannot join the chunks: {exc}") from exc
    playlist, written = finish_rendition(name, file)
    seconds = round(time.monotonic() - started, 3)
    keys = ctx.storage.publish(
        [(file, f"{name}/{file.name}"), (playlist, f"{name}/{playlist.name}")], dest_location
    )
    return {"renditions": [rendition_result(name, file, written, seconds, keys[0], keys[1])]}


def _fetch(ctx: Context, dest: Location, key: str, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    try:
        return ctx.storage.fetch(dest.join(key), folder)
    except BadInput as exc:
        # A missing intermediate is an index that has not finished (or was cleaned up): the
        # operator runs assemble after every index succeeded, so this is worth a retry.
        raise TransientError(f"missing chunk output {key}") from exc


# --- command line ----------------------------------------------------------------------------


def add_parsers(
    sub: Any, rung_type: Any, name_type: Any
) -> None:
    """The chunked subcommands on the CLI's subparsers (cli.py owns the shared types)."""

    def common(p: argparse.ArgumentParser, source: bool = True) -> None:
        if source:
            p.add_argument("--source", required=True, help="s3://bucket/key or a local path")
        p.add_argument("--dest", required=True, help="output prefix: s3://bucket/videos/42/")
        p.add_argument("--result-to", help="also store the result JSON here, last")
        p.add_argument("--work", type=work_folder, default=DEFAULT_WORK,
                       help="folder of the intermediates under --dest (default: chunks)")

    chunk = sub.add_parser("chunk", help="encode one chunk of every rung (video only)")
    common(chunk)
    chunk.add_argument("--starts", required=True, type=parse_starts,
                       help="every chunk's start in seconds: 0,20,40 (videoflix_core.chunks)")
    chunk.add_argument("--index", type=int,
                       help="which chunk (default: $JOB_COMPLETION_INDEX of an Indexed Job)")
    chunk.add_argument("--rung", required=True, action="append", type=rung_type, dest="rungs")
    chunk.add_argument("--preset", default=plan.DEFAULT_PRESET, help="x264 preset")
    chunk.add_argument("--crf", type=int, help=f"x264 CRF (default {plan.DEFAULT_CRF})")
    # The `rendition` step's rate overrides, for every rung of the chunk (the operator's
    # chunks Job of one rung passes that rung's; SinglePass, like `ladder`, passes none).
    chunk.add_argument("--video-bitrate", type=int, help="kbit/s: ABR instead of capped CRF")
    chunk.add_argument("--maxrate", type=int, help="kbit/s cap")
    chunk.add_argument("--bufsize", type=int, help="kbit/s VBV buffer (default 2x maxrate)")
    audio = sub.add_parser("audio", help="encode the whole audio track once per bitrate")
    common(audio)
    audio.add_argument("--bitrate", required=True, action="append", type=int, dest="bitrates",
                       help="kbit/s AAC (repeat for each rung's rate)")
    joined = sub.add_parser("assemble", help="join a rung's chunks and audio: no re-encode")
    common(joined, source=False)
    joined.add_argument("--name", required=True, type=name_type)
    joined.add_argument("--starts", required=True, type=parse_starts)
    joined.add_argument("--audio-bitrate", type=int,
                        help="kbit/s of the audio file to mux (omit: video only)")


def chunk_index(value: int | None, env: Mapping[str, str]) -> int:
    if value is not None:
        return value
    raw = env.get("JOB_COMPLETION_INDEX", "")
    if not raw.isdigit():
        raise BadInput("chunk needs --index or JOB_COMPLETION_INDEX")
    return int(raw)


def run(ctx: Context, args: argparse.Namespace, env: Mapping[str, str] = os.environ) -> dict[
    str, Any
]:
    if args.command == "chunk":
        names = [name for name, _, _ in args.rungs]
        if len(set(names)) != len(names):
            raise BadInput(f"duplicate rung names in {names}")
        rungs = [
            plan.with_overrides(
                plan.default_rung(name, width, height), video_kbps=args.video_bitrate,
                maxrate_kbps=args.maxrate, bufsize_kbps=args.bufsize, crf=args.crf,
            )
            for name, width, height in args.rungs
        ]
        return encode_chunk(ctx, args.source, args.dest, rungs, args.starts,
                            chunk_index(args.index, env), preset=args.preset, work=args.work)
    if args.command == "audio":
        return encode_audio(ctx, args.source, args.dest, args.bitrates, args.work)
    return assemble(ctx, args.dest, args.name, args.starts, args.audio_bitrate, args.work)
