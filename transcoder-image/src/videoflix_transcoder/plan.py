"""Pure decisions: rung settings, output sizes, threads, and the FFmpeg command lines.

Nothing here runs a process, so tests check every command line without FFmpeg.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from videoflix_transcoder.errors import BadInput
from videoflix_transcoder.probe import ProbeResult, input_args

KEYFRAME_SECONDS = 2  # every rung: an IDR exactly every 2 s, so players switch at any fragment
AUDIO_SAMPLE_RATE = 48000
DEFAULT_PRESET = "veryfast"
DEFAULT_CRF = 23
# Capped CRF: quality-driven, but never above maxrate over a bufsize window (kbit/s).
_MAXRATE_BY_HEIGHT = {
    120: 250, 240: 550, 360: 900, 480: 1400, 720: 3000, 1080: 6000, 1440: 10000, 2160: 16000,
}
# CMAF fragmented MP4: a sample-less moov first (the init segment), one fragment per keyframe
# interval, a global sidx after moov so a <video> element seeks without reading every fragment.
# delay_moov (instead of empty_moov) writes moov once the first fragment is known, so it can
# carry edit lists: without them the B-frame delay (2 frames) and the AAC priming (1024
# samples) stay in the timeline and video trails audio by ~45 ms.
MP4_FLAGS = "+frag_keyframe+delay_moov+default_base_moof+global_sidx+cmaf"


MIN_SIDE = 16
MAX_SIDE = 4320


@dataclass(frozen=True)
class Rung:
    name: str
    width: int  # the exact output size, as displayed: the planner decided it, we encode it
    height: int
    maxrate_kbps: int
    bufsize_kbps: int
    audio_kbps: int
    crf: int = DEFAULT_CRF
    video_kbps: int | None = None  # set: constrained ABR instead of capped CRF


def check_size(name: str, width: int, height: int) -> None:
    """Refuses sizes H.264 4:2:0 or players cannot take: odd, tiny or beyond 8K."""
    for side in (width, height):
        if side < MIN_SIDE or side > MAX_SIDE or side % 2:
            raise BadInput(
                f"rung {name}: {width}x{height} is not a size we encode (each side even,"
                f" {MIN_SIDE} to {MAX_SIDE})"
            )


def check_fits(source: ProbeResult, name: str, width: int, height: int) -> None:
    """Refuses an upscale or a distorted picture; the planner decided the size, we only check it.

    The aspect may differ by rounding one side to even (at most 1 px on the derived side):
    |w*sh - h*sw| <= max(sw, sh) covers that, and the source's own size made even.
    """
    sw, sh = source.width, source.height
    if width > sw or height > sh:
        raise BadInput(
            f"rung {name}: {width}x{height} is larger than the source ({sw}x{sh});"
            " refusing to upscale"
        )
    if abs(width * sh - height * sw) > max(sw, sh):
        raise BadInput(
            f"rung {name}: {width}x{height} does not keep the source's aspect ({sw}x{sh})"
        )


def default_rung(name: str, width: int, height: int) -> Rung:
    check_size(name, width, height)
    short_side = min(width, height)  # caps follow the "p" number, the short side
    maxrate = next(
        (rate for h, rate in sorted(_MAXRATE_BY_HEIGHT.items()) if h >= short_side),
        max(_MAXRATE_BY_HEIGHT.values()),
    )
    audio = 64 if short_side <= 120 else 96 if short_side <= 360 else 128
    return Rung(name, width, height, maxrate, 2 * maxrate, audio)


def with_overrides(
    rung: Rung,
    *,
    video_kbps: int | None = None,
    maxrate_kbps: int | None = None,
    bufsize_kbps: int | None = None,
    audio_kbps: int | None = None,
    crf: int | None = None,
) -> Rung:
    maxrate = maxrate_kbps or (max(rung.maxrate_kbps, video_kbps) if video_kbps else None)
    return replace(
        rung,
        video_kbps=video_kbps or rung.video_kbps,
        maxrate_kbps=maxrate or rung.maxrate_kbps,
        bufsize_kbps=bufsize_kbps or (2 * maxrate if maxrate else rung.bufsize_kbps),
        audio_kbps=audio_kbps or rung.audio_kbps,
        crf=rung.crf if crf is None else crf,
    )


def _even(value: float) -> int:
    return max(2, round(value / 2.0) * 2)


def scaled_size(display_width: int, display_height: int, short_side: int) -> tuple[int, int]:
    """Even size whose short side is `short_side`, keeping the display aspect ratio.

    Thumbnails only: rendition sizes come from the planner (`--width`/`--height`).
    """
    source_short = min(display_width, display_height)
    if short_side > source_short:
        raise BadInput(
            f"rung {short_side}p is larger than the source ({display_width}x{display_height});"
            " refusing to upscale"
        )
    if short_side >= source_short - 1:  # the source's own size, made even
        return display_width // 2 * 2, display_height // 2 * 2
    if display_width >= display_height:
        return _even(short_side * display_width / display_height), short_side
    return short_side, _even(short_side * display_height / display_width)


def threads_from_cpu_limit(value: str | None) -> int:
    """Threads for FFmpeg from a CPU limit ("2", "1.5", "500m"); 0 lets FFmpeg choose.

    Without it x264 sizes itself to the node's CPUs, not the pod's limit.
    """
    if not value:
        return 0
    text = value.strip()
    try:
        cpus = float(text[:-1]) / 1000 if text.endswith("m") else float(text)
    except ValueError:
        return 0
    return max(1, math.ceil(cpus)) if cpus > 0 else 0


def gop_frames(fps: float | None) -> int:
    # A ceiling only: the forced keyframes below decide; this one more frame never fires first.
    return math.ceil(KEYFRAME_SECONDS * (fps or 30.0)) + 1


@dataclass(frozen=True)
class Output:
    rung: Rung
    width: int
    height: int
    path: str


def plan_outputs(
    source: ProbeResult, rungs: list[Rung], paths: list[str]
) -> list[Output]:
    for rung in rungs:
        check_fits(source, rung.name, rung.width, rung.height)
    return [
        Output(rung, rung.width, rung.height, path)
        for rung, path in zip(rungs, paths, strict=True)
    ]


# --- colour -----------------------------------------------------------------------------

HDR_TRANSFERS = frozenset({"smpte2084", "arib-std-b67"})  # PQ (HDR10) and HLG
# Every output says what it is: browsers and phones otherwise guess, and guess differently.
BT709_TAGS = [
    "-color_primaries", "bt709", "-color_trc", "bt709", "-colorspace", "bt709",
    "-color_range", "tv",
]
# ffprobe's names where zscale spells them differently; names zscale lacks fall back to a
# close standard one (240M is NTSC's 170M in practice).
_TRANSFERS = {"gamma22": "bt470m", "gamma28": "bt470bg", "smpte240m": "smpte170m",
              "bt1361e": "bt709", "bt2020-10": "bt2020-10", "bt2020-12": "bt2020-12",
              "bt709": "bt709", "smpte170m": "smpte170m", "linear": "linear",
              "iec61966-2-1": "iec61966-2-1", "iec61966-2-4": "iec61966-2-4",
              "smpte2084": "smpte2084", "arib-std-b67": "arib-std-b67"}
_MATRICES = {"bt709": "bt709", "fcc": "fcc", "bt470bg": "bt470bg", "smpte170m": "smpte170m",
             "smpte240m": "smpte170m", "ycgco": "ycgco", "bt2020nc": "bt2020nc",
             "bt2020c": "bt2020c"}
_PRIMARIES = {"bt709", "bt470m", "bt470bg", "smpte170m", "smpte240m", "film", "bt2020",
              "smpte428", "smpte431", "smpte432", "jedec-p22"}
_INTERLACED = frozenset({"tt", "bb", "tb", "bt"})
# HDR → SDR: linear light with 100 nits as 1.0 (SDR reference white), gamut to BT.709 in
# float RGB, then hable: its filmic shoulder rolls highlights (a phone's 1000-nit sky) off
# smoothly instead of clipping them, its toe keeps shadows; desat=0 keeps bright colours
# instead of greying them (the default desaturates everything above SDR white).
TONEMAP = "hable:desat=0"
NOMINAL_PEAK_NITS = 100
# The peak hable maps to SDR white. Without HDR10 metadata FFmpeg guesses it, and the guess
# moved between builds (Debian's 5.1.9 takes 1000 nits; our PQ test clip's mean luma went
# from 109 to 119 with it), so a source's look would depend on the image's FFmpeg.
# Untagged PQ is taken as mastered at 1000 nits (what HDR10 phones and most grading
# monitors reach) and HLG at its reference display's 1000 nits (BT.2100); tags below SDR
# white (bogus, often 0 or 1) are raised to it, tags above PQ's range are capped.
DEFAULT_HDR_PEAK_NITS = 1000.0
MAX_HDR_PEAK_NITS = 10000.0


@dataclass(frozen=True)
class SourceColour:
    """What the source's samples mean, in zscale's names, with the guesses made explicit."""

    transfer: str
    primaries: str
    matrix: str
    full_range: bool

    @property
    def hdr(self) -> bool:
        return self.transfer in HDR_TRANSFERS

    @property
    def is_bt709(self) -> bool:
        """Already what every output is: scaling alone keeps the colours right."""
        return (self.transfer, self.primaries, self.matrix, self.full_range) == (
            "bt709", "bt709", "bt709", False,
        )


def source_colour(probe: ProbeResult) -> SourceColour:
    """The source's colour as tagged; untagged values guessed the way players guess.

    Untagged matrix: BT.601 below 720 lines, BT.709 from 720 up (BT.2020 for HDR). Untagged
    primaries are BT.709 (no gamut change, as browsers assume), BT.2020 for HDR.
    """
    transfer = _TRANSFERS.get(probe.color_transfer or "", "bt709")
    hdr = transfer in HDR_TRANSFERS
    guess = "bt2020nc" if hdr else "smpte170m" if probe.coded_height < 720 else "bt709"
    matrix = _MATRICES.get(probe.color_space or "", guess)
    if probe.color_primaries in _PRIMARIES:
        primaries = str(probe.color_primaries)
    else:
        primaries = "bt2020" if hdr else "bt709"
    full = probe.color_range == "pc" or (probe.pix_fmt or "").startswith("yuvj")
    return SourceColour(transfer, primaries, matrix, full)


def tonemap_peak(probe: ProbeResult) -> float:
    """The source's peak relative to SDR white (linear light, 1.0 = 100 nits)."""
    nits = probe.hdr_peak_nits or DEFAULT_HDR_PEAK_NITS
    return min(max(nits, NOMINAL_PEAK_NITS), MAX_HDR_PEAK_NITS) / NOMINAL_PEAK_NITS


def deinterlace_filters(probe: ProbeResult) -> list[str]:
    """bwdif once per source, before scaling (fields must be split at the coded size).

    One frame per frame (send_frame), not one per field: the frame rate, the 2 s keyframe
    grid and the bitrate stay those of the source. deint=all: the stream says interlaced,
    and per-frame flags are often missing (DV, ProRes in MOV).
    """
    if probe.field_order in _INTERLACED:
        return ["bwdif=mode=send_frame:parity=auto:deint=all"]
    return []


def colour_filters(probe: ProbeResult, width: int, height: int) -> list[str]:
    """Scale to width x height and make the picture 8-bit 4:2:0 BT.709 SDR, limited range.

    The one colour chain: renditions, poster and sprite all use it. Scaling comes first,
    inside the same zscale that linearises HDR: tone-mapping a 640x360 picture instead of a
    4K one is many times cheaper (measured ~5x at 1080p → 360p) and the difference is at
    hard edges only. BT.709 sources keep the cheap swscale path.
    """
    colour = source_colour(probe)
    if colour.is_bt709:
        return [f"scale={width}:{height}", "setsar=1", "format=yuv420p"]
    # zscale refuses odd-sized subsampled pictures (4:2:0 853x481: "image dimensions must be
    # divisible by subsampling factor"): swscale resizes those to the even output size first,
    # keeping the pixel format, and zscale then converts the colour only.
    resize_first = bool(probe.coded_width % 2 or probe.coded_height % 2)
    size = "" if resize_first else f"w={width}:h={height}:f=bicubic:"
    inputs = (
        f"{size}tin={colour.transfer}:min={colour.matrix}"
        f":pin={colour.primaries}:rin={'pc' if colour.full_range else 'tv'}"
    )
    chain = [f"scale={width}:{height}"] if resize_first else []
    if colour.hdr:
        chain += [
            f"zscale={inputs}:t=linear:npl={NOMINAL_PEAK_NITS}",
            "format=gbrpf32le",
            "zscale=p=bt709",
            f"tonemap={TONEMAP}:peak={tonemap_peak(probe):g}",
            "zscale=t=bt709:m=bt709:r=tv",
        ]
    else:
        chain.append(f"zscale={inputs}:t=bt709:m=bt709:p=bt709:r=tv")
    return [*chain, "format=yuv420p", "setsar=1"]


# JPEG (JFIF) means BT.601 full range: convert the BT.709 limited picture explicitly, or the
# encoder's automatic conversion would only stretch the range and keep the BT.709 matrix.
JPEG_FILTERS = ["zscale=min=bt709:rin=tv:m=bt470bg:r=pc", "format=yuvj420p"]


def picture_filters(probe: ProbeResult, width: int, height: int) -> list[str]:
    """Deinterlace, scale and colour for one picture stream (thumbnails: no split)."""
    return [*deinterlace_filters(probe), *colour_filters(probe, width, height)]


def _video_codec_args(out: Output, fps: float | None, threads: int, preset: str) -> list[str]:
    rung = out.rung
    rate = ["-b:v", f"{rung.video_kbps}k"] if rung.video_kbps else ["-crf", str(rung.crf)]
    gop = str(gop_frames(fps))
    args = [
        "-c:v", "libx264", "-preset", preset, "-profile:v", "high", *rate,
        "-maxrate", f"{rung.maxrate_kbps}k", "-bufsize", f"{rung.bufsize_kbps}k",
        "-g", gop, "-keyint_min", gop, "-sc_threshold", "0",
        "-force_key_frames", f"expr:gte(t,n_forced*{KEYFRAME_SECONDS})",
    ]
    if threads:
        args += ["-threads", str(threads)]
    return args


def encode_argv(
    source_path: str,
    probe: ProbeResult,
    outputs: list[Output],
    *,
    threads: int = 0,
    preset: str = DEFAULT_PRESET,
) -> list[str]:
    """One FFmpeg process: decode once, split, scale and encode every output.

    A single rendition is the same command with one output, so both strategies share it.
    """
    if not outputs:
        raise ValueError("no outputs")
    labels = [f"v{i}" for i in range(len(outputs))]
    chains = [
        f"[{label}]{','.join(colour_filters(probe, o.width, o.height))}[o{label}]"
        for label, o in zip(labels, outputs, strict=True)
    ]
    # Deinterlace once, before the split; each output then scales and colours its own copy.
    fan_out = f"split={len(outputs)}" if len(outputs) > 1 else "null"
    head = ",".join([*deinterlace_filters(probe), fan_out])
    split = f"[0:{probe.video_index}]{head}" + "".join(f"[{x}]" for x in labels)
    argv = [
        "ffmpeg", "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error",
        "-progress", "pipe:1", "-y",
    ]
    if threads:
        argv += ["-threads", str(threads), "-filter_complex_threads", str(threads)]
    argv += [*input_args(), "-i", source_path, "-filter_complex", ";".join([split, *chains])]
    for label, out in zip(labels, outputs, strict=True):
        argv += ["-map", f"[o{label}]"]
        if probe.audio_index is not None:
            argv += ["-map", f"0:{probe.audio_index}"]
        # The GOP ceiling from the densest rate: a variable-rate source averaging 17 fps had
        # 30 fps stretches, where an average-based -g fired before the 2 s grid.
        peak_fps = max(probe.fps or 0.0, probe.max_fps or 0.0) or None
        argv += _video_codec_args(out, peak_fps, threads, preset)
        # vfr: every source frame keeps its own timestamp (only duplicates are dropped). The
        # mp4 default, cfr, duplicates frames of a variable-rate phone video up to its
        # nominal rate (50 frames became 89 in a test): wasted bits, same picture. Keyframes
        # stay on the 2 s grid because they are forced by time, not by frame count.
        argv += ["-fps_mode", "vfr", *BT709_TAGS]
        if probe.audio_index is not None:
            argv += [
                "-c:a", "aac", "-b:a", f"{out.rung.audio_kbps}k",
                "-ac", "2", "-ar", str(AUDIO_SAMPLE_RATE),
            ]
        argv += [
            # Privacy: phone videos carry GPS positions and device names in metadata.
            "-map_metadata", "-1", "-map_chapters", "-1",
            "-max_muxing_queue_size", "4096",
            "-movflags", MP4_FLAGS, "-use_editlist", "1", "-f", "mp4", out.path,
        ]
    return argv


# --- thumbnails -------------------------------------------------------------------------

POSTER_SHORT_SIDE = 720
SPRITE_TILE_WIDTH = 160
SPRITE_COLUMNS = 10
SPRITE_MAX_TILES = 100
# Mean luma above which a frame is not "black" (limited range: black is 16, white 235).
POSTER_MIN_LUMA = 32


def poster_size(probe: ProbeResult) -> tuple[int, int]:
    return scaled_size(
        probe.width, probe.height, min(POSTER_SHORT_SIDE, min(probe.width, probe.height) // 2 * 2)
    )


def poster_window(duration: float) -> tuple[float, float]:
    """Where to look for the poster: past intros and fades, a few seconds long."""
    start = min(duration * 0.2, 15.0)
    return start, max(0.5, min(5.0, duration - start))


def poster_argv(
    source_path: str, probe: ProbeResult, out_path: str, *, skip_dark: bool, threads: int = 0
) -> list[str]:
    """The most representative frame (ffmpeg `thumbnail` filter) of a window after the start.

    With skip_dark, frames whose mean luma is below POSTER_MIN_LUMA never qualify, so a fade
    from black cannot become the poster; if nothing qualifies the caller retries without it.
    """
    start, length = poster_window(probe.duration_seconds)
    width, height = poster_size(probe)
    frames = max(1, int(length * (probe.fps or 30.0)))
    chain = picture_filters(probe, width, height)
    if skip_dark:
        chain += [
            "signalstats",
            "metadata=mode=select:key=lavfi.signalstats.YAVG"
            f":value={POSTER_MIN_LUMA}:function=greater",
        ]
    chain += [f"thumbnail=n={frames}", *JPEG_FILTERS]
    argv = ["ffmpeg", "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error", "-y"]
    if threads:
        argv += ["-threads", str(threads)]
    return [
        *argv,
        "-ss", f"{start:.3f}", "-t", f"{length:.3f}", *input_args(), "-i", source_path,
        "-map", f"0:{probe.video_index}", "-an", "-sn", "-dn", "-map_metadata", "-1",
        "-vf", ",".join(chain), "-frames:v", "1", "-q:v", "3", "-update", "1",
        "-f", "image2", out_path,
    ]


@dataclass(frozen=True)
class Storyboard:
    interval: float
    count: int
    tile_width: int
    tile_height: int
    columns: int
    rows: int


def storyboard_plan(probe: ProbeResult) -> Storyboard:
    interval = max(2.0, probe.duration_seconds / SPRITE_MAX_TILES)
    # One tile per interval start that a frame reaches: the last frame is at duration - 1/fps.
    last_frame = probe.duration_seconds - 1.0 / (probe.fps or 30.0)
    count = max(1, min(SPRITE_MAX_TILES, math.floor(last_frame / interval + 1e-6) + 1))
    tile_width = SPRITE_TILE_WIDTH if probe.width >= probe.height else _even(
        SPRITE_TILE_WIDTH * probe.width / probe.height
    )
    tile_width = min(tile_width, probe.width // 2 * 2)
    tile_height = _even(tile_width * probe.height / probe.width)
    columns = min(SPRITE_COLUMNS, count)
    return Storyboard(
        interval, count, tile_width, tile_height, columns, math.ceil(count / columns)
    )


def sprite_argv(
    source_path: str, probe: ProbeResult, plan: Storyboard, out_path: str, *, threads: int = 0
) -> list[str]:
    argv = ["ffmpeg", "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error", "-y"]
    if threads:
        argv += ["-threads", str(threads)]
    # The first frame at or after each multiple of the interval: one tile per cue. (The fps
    # filter would drop a last partial interval, leaving the last cue without a tile.)
    # Colour after select: only the ~100 chosen frames are tone-mapped. No deinterlacing:
    # bwdif needs neighbouring frames, and a 160 px tile averages the fields anyway.
    vf = ",".join([
        "setpts=PTS-STARTPTS", f"select='gte(t,selected_n*{plan.interval:.6f})'",
        *colour_filters(probe, plan.tile_width, plan.tile_height),
        f"tile={plan.columns}x{plan.rows}", *JPEG_FILTERS,
    ])
    return [
        *argv, *input_args(), "-i", source_path, "-map", f"0:{probe.video_index}",
        "-an", "-sn", "-dn",
        "-map_metadata", "-1", "-vf", vf, "-frames:v", "1", "-q:v", "5", "-update", "1",
        "-f", "image2", out_path,
    ]


def _timestamp(seconds: float) -> str:
    millis = round(seconds * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{millis:03d}"


def storyboard_vtt(plan: Storyboard, duration: float, sprite_name: str = "sprite.jpg") -> str:
    """WebVTT thumbnail track: one cue per tile, pointing at it with a #xywh fragment."""
    lines = ["WEBVTT", ""]
    for i in range(plan.count):
        start = i * plan.interval
        end = duration if i == plan.count - 1 else (i + 1) * plan.interval
        x = (i % plan.columns) * plan.tile_width
        y = (i // plan.columns) * plan.tile_height
        lines += [
            f"{_timestamp(start)} --> {_timestamp(end)}",
            f"{sprite_name}#xywh={x},{y},{plan.tile_width},{plan.tile_height}",
            "",
        ]
    return "\n".join(lines)
