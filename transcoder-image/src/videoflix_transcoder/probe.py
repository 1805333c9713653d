"""ffprobe command lines and the parser that turns ffprobe JSON into a ProbeResult.

The parser is pure: it decides "is this a video we can transcode?" and raises BadInput with a
one-line reason a person can act on when it is not.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from videoflix_transcoder.errors import BadInput

# Demuxers that read single pictures or text, never a video.
_STILL_IMAGE_FORMATS = {"image2", "tty"}
_TEXT_CODECS = {"ansi", "bintext", "xbin", "idf"}

# The only demuxers FFmpeg may open a source with (FFmpeg's names; a format_name lists aliases).
# Everything else is refused before its header is read: playlists (hls, dash), lists of other
# files (concat, image2 sequences), devices and generators (lavfi, v4l2) and network sessions
# (sdp, rtp, rtsp) all make FFmpeg open more than the one file it was given.
ALLOWED_FORMATS = (
    "mov", "mp4", "m4a", "3gp", "3g2", "mj2", "matroska", "webm", "avi", "mpegts", "flv",
    "mpeg", "ogg", "asf", "mxf", "dv",
)
# Single-file demuxers the first probe may also open, only to refuse them with a clear reason
# (parse_probe: "a still image", "a text file"); they read nothing but the file itself.
_REFUSED_WITH_REASON = (
    "tty", "png_pipe", "jpeg_pipe", "bmp_pipe", "webp_pipe", "tiff_pipe", "gif_pipe",
)
_NOT_ALLOWED = re.compile(r"\[(\w+) @ [^\]]*\] Format not on whitelist")


def input_args(*, probing: bool = False) -> list[str]:
    """Options before every `-i`/input path: local files only, allowed demuxers only.

    `-protocol_whitelist file` also covers what a demuxer opens itself, so no source can make
    FFmpeg connect anywhere (`-progress pipe:1` is an output and is not affected).
    """
    formats = ALLOWED_FORMATS + _REFUSED_WITH_REASON if probing else ALLOWED_FORMATS
    return ["-protocol_whitelist", "file", "-format_whitelist", ",".join(formats)]


def refused_format(stderr: str) -> str | None:
    """The demuxer FFmpeg detected but was not allowed to open, from its error output."""
    match = _NOT_ALLOWED.search(stderr)
    return match[1] if match else None


@dataclass(frozen=True)
class ProbeResult:
    duration_seconds: float
    width: int  # as displayed: rotation and sample aspect ratio applied
    height: int
    rotation: int  # 0, 90, 180 or 270
    fps: float | None
    video_codec: str
    audio_codec: str | None
    bitrate: int | None
    video_index: int  # absolute stream index, for -map 0:N
    audio_index: int | None
    coded_width: int
    coded_height: int
    pix_fmt: str | None
    video_duration_seconds: float | None = None  # the container's may include longer audio
    # What the pixels mean, as ffprobe names it (None: not tagged). plan.py decides from these.
    color_transfer: str | None = None
    color_primaries: str | None = None
    color_space: str | None = None
    color_range: str | None = None  # "tv" (limited) or "pc" (full)
    field_order: str | None = None  # "progressive", "tt", "bb", "tb", "bt"
    bits: int = 8  # bits per sample of the decoded picture
    max_fps: float | None = None  # r_frame_rate: above the average for variable-rate video
    # HDR10 static metadata: the brightest pixel the source claims, in nits (None: untagged).
    hdr_peak_nits: float | None = None

    def to_result(self) -> dict[str, Any]:
        """The probe result of the CLI contract (camelCase)."""
        return {
            "durationSeconds": round(self.duration_seconds, 3),
            "width": self.width,
            "height": self.height,
            "rotation": self.rotation,
            "fps": None if self.fps is None else round(self.fps, 3),
            # The stream rate: equal to fps for constant rate (the operator chunks only those).
            "maxFps": None if self.max_fps is None else round(self.max_fps, 3),
            "videoCodec": self.video_codec,
            "audioCodec": self.audio_codec,
            "bitrate": self.bitrate,
        }


def ffprobe_argv(path: str) -> list[str]:
    return [
        "ffprobe", "-hide_banner", "-loglevel", "error",
        "-print_format", "json", "-show_format", "-show_streams", "-show_error",
        *input_args(probing=True), path,
    ]


# The HDR10 fields `hdr_peak_nits` reads: MaxCLL and the mastering display's peak.
_MAX_CLL, _MAX_MASTERING = "max_content", "max_luminance"


def decode_check_argv(path: str, video_index: int) -> list[str]:
    """Decode the first few frames: proves the codec is supported and the data is real."""
    return [
        "ffprobe", "-hide_banner", "-loglevel", "error", "-print_format", "json",
        "-select_streams", str(video_index), "-count_frames",
        "-read_intervals", "%+#5",
        # HDR10 metadata often rides in the bitstream (HEVC SEI) only, so it is read from
        # the decoded frames; the container's copy is in the -show_streams report.
        "-show_entries",
        f"stream=nb_read_frames:frame_side_data={_MAX_CLL},{_MAX_MASTERING}",
        *input_args(), path,
    ]


def demux_argv(path: str, video_index: int) -> list[str]:
    """Read every video packet without decoding (I/O only) and report how far they reach.

    A truncated MP4 whose index (moov) survived probes fine; its packets stop early.
    """
    return [
        "ffmpeg", "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error",
        "-progress", "pipe:1", *input_args(), "-i", path, "-map", f"0:{video_index}",
        "-c", "copy", "-f", "null", "-",
    ]


def frames_read(report: dict[str, Any]) -> int:
    streams = report.get("streams") or [{}]
    try:
        return int(streams[0].get("nb_read_frames", 0))
    except (TypeError, ValueError):
        return 0


def hdr_peak_nits(*reports: dict[str, Any]) -> float | None:
    """The source's own peak brightness: MaxCLL, else the mastering display's peak.

    MaxCLL measures the content, the mastering peak only bounds it, so MaxCLL wins; zero
    means "unknown" in both (HDR10). Reports are searched in order, frames before streams.
    """
    sides = [
        side
        for report in reports
        for item in [*(report.get("frames") or []), *(report.get("streams") or [])]
        for side in item.get("side_data_list") or []
    ]
    for key in (_MAX_CLL, _MAX_MASTERING):
        for side in sides:
            try:
                nits = float(Fraction(str(side.get(key, 0))))
            except (ValueError, ZeroDivisionError):
                continue
            if nits > 0:
                return nits
    return None


def check_coverage(declared_seconds: float, demuxed_seconds: float) -> None:
    """Tolerates small gaps (a last frame, rounding); refuses a file that stops early."""
    missing = declared_seconds - demuxed_seconds
    if missing > max(1.0, 0.05 * declared_seconds):
        raise BadInput(
            f"source is truncated: its data ends at {demuxed_seconds:.1f} s"
            f" of {declared_seconds:.1f} s"
        )


def _float(value: Any) -> float | None:
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return result if math.isfinite(result) else None


def _rate(value: Any) -> float | None:
    try:
        rate = Fraction(str(value))
    except (ValueError, ZeroDivisionError):
        return None
    return float(rate) if rate > 0 else None


def rotation_of(stream: dict[str, Any]) -> int:
    """Rotation in degrees (0/90/180/270) from the display matrix or the legacy `rotate` tag."""
    degrees: float | None = None
    for side in stream.get("side_data_list") or []:
        if "rotation" in side:
            degrees = _float(side["rotation"])
    if degrees is None:
        degrees = _float((stream.get("tags") or {}).get("rotate"))
    if degrees is None:
        return 0
    return round(degrees / 90.0) * 90 % 360


def display_size(width: int, height: int, sar: str | None, rotation: int) -> tuple[int, int]:
    """Size as a player shows it: non-square pixels widened, quarter turns swapped."""
    try:
        ratio = Fraction(str(sar).replace(":", "/")) if sar else Fraction(1)
    except (ValueError, ZeroDivisionError):
        ratio = Fraction(1)
    if ratio > 0 and ratio != 1:
        width = max(1, round(width * ratio))
    if rotation in (90, 270):
        width, height = height, width
    return width, height


_BITS = re.compile(r"p(9|10|12|14|16)(le|be)?$")


def bits_of(pix_fmt: str | None) -> int:
    """Bits per sample from the pixel format name (yuv420p10le: 10); 8 when it says none."""
    match = _BITS.search(pix_fmt or "")
    return int(match[1]) if match else 8


def _tag(value: Any) -> str | None:
    """A colour property as ffprobe names it; absent, "unknown" and "unspecified" are None."""
    text = str(value) if value is not None else ""
    return None if text in ("", "unknown", "unspecified", "reserved") else text


def _main_audio(audios: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The stream a player would play: the one flagged default, else the first."""
    for stream in audios:
        if (stream.get("disposition") or {}).get("default"):
            return stream
    return audios[0] if audios else None


def parse_probe(report: dict[str, Any], size_bytes: int | None = None) -> ProbeResult:
    """Turn `ffprobe -show_format -show_streams -show_error` JSON into a ProbeResult.

    Raises BadInput with a one-line reason for anything that is not a decodable video.
    """
    if size_bytes == 0:
        raise BadInput("source is empty (0 bytes)")
    error = report.get("error")
    fmt = report.get("format") or {}
    refused = refused_format(str((error or {}).get("stderr", "")))
    if refused:
        raise BadInput(
            f"source format {refused} is not accepted (allowed: {', '.join(ALLOWED_FORMATS)})"
        )
    if error or not fmt:
        detail = (error or {}).get("string", "no format detected")
        raise BadInput(f"source is not a readable video file ({detail})")
    format_names = set(str(fmt.get("format_name", "")).split(","))
    streams = report.get("streams") or []
    videos = [
        s for s in streams
        if s.get("codec_type") == "video"
        and not (s.get("disposition") or {}).get("attached_pic")
    ]
    audios = [s for s in streams if s.get("codec_type") == "audio"]
    if format_names & {"tty"} or any(s.get("codec_name") in _TEXT_CODECS for s in videos):
        raise BadInput("source is a text file, not a video")
    if format_names & _STILL_IMAGE_FORMATS or any(n.endswith("_pipe") for n in format_names):
        codec = videos[0].get("codec_name", "unknown") if videos else "unknown"
        raise BadInput(f"source is a still image ({codec}), not a video")
    if not format_names & set(ALLOWED_FORMATS):
        raise BadInput(
            f"source format {fmt.get('format_name')} is not accepted"
            f" (allowed: {', '.join(ALLOWED_FORMATS)})"
        )
    if not videos:
        if audios:
            codec = audios[0].get("codec_name", "unknown")
            raise BadInput(f"source has no video stream (audio only: {codec})")
        raise BadInput("source has no video stream")
    video = videos[0]
    coded_width, coded_height = int(video.get("width") or 0), int(video.get("height") or 0)
    if coded_width <= 0 or coded_height <= 0:
        raise BadInput("source video has no picture size (corrupt or unsupported codec)")
    duration = _float(fmt.get("duration")) or _float(video.get("duration"))
    if not duration or duration <= 0:
        raise BadInput("source has no duration (not a playable video)")
    if _float(video.get("nb_frames")) == 1:
        raise BadInput(f"source is a still image ({video.get('codec_name')}), not a video")
    rotation = rotation_of(video)
    width, height = display_size(
        coded_width, coded_height, video.get("sample_aspect_ratio"), rotation
    )
    bitrate = _float(fmt.get("bit_rate"))
    audio = _main_audio(audios)
    return ProbeResult(
        duration_seconds=duration,
        width=width,
        height=height,
        rotation=rotation,
        fps=_rate(video.get("avg_frame_rate")) or _rate(video.get("r_frame_rate")),
        video_codec=str(video.get("codec_name", "unknown")),
        audio_codec=None if audio is None else str(audio.get("codec_name", "unknown")),
        bitrate=None if bitrate is None else int(bitrate),
        video_index=int(video.get("index", 0)),
        audio_index=None if audio is None else int(audio.get("index", 0)),
        coded_width=coded_width,
        coded_height=coded_height,
        pix_fmt=video.get("pix_fmt"),
        video_duration_seconds=_float(video.get("duration")),
        color_transfer=_tag(video.get("color_transfer")),
        color_primaries=_tag(video.get("color_primaries")),
        color_space=_tag(video.get("color_space")),
        color_range=_tag(video.get("color_range")),
        field_order=_tag(video.get("field_order")),
        bits=bits_of(video.get("pix_fmt")),
        max_fps=_rate(video.get("r_frame_rate")),
    )


_AVC_PROFILES = {  # profile_idc, constraint flags (RFC 6381 avc1.PPCCLL)
    "Constrained Baseline": (0x42, 0x40),
    "Baseline": (0x42, 0x00),
    "Main": (0x4D, 0x00),
    "High": (0x64, 0x00),
}
_AAC_OBJECT_TYPES = {"LC": 2, "HE-AAC": 5, "HE-AACv2": 29}


def codecs_of(report: dict[str, Any]) -> str | None:
    """The HLS CODECS attribute of our outputs (H.264 + AAC), for master playlists."""
    parts = []
    for stream in report.get("streams") or []:
        kind, name = stream.get("codec_type"), stream.get("codec_name")
        if kind == "video" and name == "h264":
            profile = _AVC_PROFILES.get(str(stream.get("profile")))
            level = stream.get("level")
            if profile is None or not isinstance(level, int) or level <= 0:
                return None
            parts.append(f"avc1.{profile[0]:02x}{profile[1]:02x}{level:02x}")
        elif kind == "audio" and name == "aac":
            parts.append(f"mp4a.40.{_AAC_OBJECT_TYPES.get(str(stream.get('profile')), 2)}")
    return ",".join(parts) or None
