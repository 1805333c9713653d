"""The rendition ladder and the plan of which rungs fit one source.

Never upscale: a rung taller than the source (as displayed, i.e. after rotation) is dropped,
because it
would only cost storage and bandwidth for no extra detail.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from videoflix_core.transcode import ProbeResult, RenditionSpec


@dataclass(frozen=True)
class Rung:
    """One planned rendition with its encoder rates in kbit/s (None: the transcoder's default)."""

    name: str
    height: int
    video_bitrate: int | None = None
    maxrate: int | None = None
    bufsize: int | None = None
    audio_bitrate: int | None = None

    def cli_args(self) -> list[str]:
        """The transcoder's override flags for this rung (only the ones that are set)."""
        args: list[str] = []
        for flag, value in (
            ("--video-bitrate", self.video_bitrate),
            ("--maxrate", self.maxrate),
            ("--bufsize", self.bufsize),
            ("--audio-bitrate", self.audio_bitrate),
        ):
            if value is not None:
                args += [flag, str(value)]
        return args


# Capped CRF (quality-driven, no average target): caps follow common H.264 streaming ladders,
# VBV buffer 2x the cap.
DEFAULT_LADDER: tuple[Rung, ...] = (
    Rung("120p", 120, maxrate=250, bufsize=500, audio_bitrate=64),
    Rung("360p", 360, maxrate=900, bufsize=1800, audio_bitrate=96),
    Rung("720p", 720, maxrate=3000, bufsize=6000, audio_bitrate=128),
    Rung("1080p", 1080, maxrate=5500, bufsize=11000, audio_bitrate=160),
)


def ladder_from_spec(
    renditions: Iterable[RenditionSpec] | None, defaults: Iterable[Rung] = DEFAULT_LADDER
) -> list[Rung]:
    """The ladder a CR asks for: its own rungs merged over the defaults of the same name, or the
    defaults when it names none. Sorted by height so plans and names are stable."""
    by_name: Mapping[str, Rung] = {r.name: r for r in defaults}
    if renditions is None:
        rungs = list(by_name.values())
    else:
        rungs = []
        for spec in renditions:
            base = by_name.get(spec.name, Rung(spec.name, spec.target_height))
            rungs.append(
                replace(
                    base,
                    height=spec.target_height,
                    video_bitrate=spec.video_bitrate or base.video_bitrate,
                    maxrate=spec.maxrate or base.maxrate,
                    bufsize=spec.bufsize or base.bufsize,
                    audio_bitrate=spec.audio_bitrate or base.audio_bitrate,
                )
            )
    return sorted(rungs, key=lambda r: (r.height, r.name))


def plan_ladder(
    probe: ProbeResult, ladder: Iterable[Rung], include_source_height: bool = False
) -> list[Rung]:
    """The rungs to encode for this source, lowest first.

    Only rungs no taller than the displayed source survive. A source smaller than every rung still
    gets one rendition (the smallest rung at the source's own even height) so it stays playable.
    With `include_source_height`, a source between rungs (e.g. 480p) also gets a rung at its height.
    """
    rungs = sorted(ladder, key=lambda r: (r.height, r.name))
    if not rungs:
        return []
    _, display_height = probe.display_size
    if display_height <= 0:
        raise ValueError("the probe found no video picture (height 0)")
    fitting = [r for r in rungs if r.height <= display_height]
    if not fitting:
        return [replace(rungs[0], height=max(2, display_height - display_height % 2))]
    even_height = display_height - display_height % 2
    if include_source_height and fitting[-1].height < even_height and len(fitting) < len(rungs):
        above = rungs[len(fitting)]
        fitting.append(replace(above, name=f"{even_height}p", height=even_height))
    return fitting


def output_size(probe: ProbeResult, height: int) -> tuple[int, int]:
    """(width, height) of a rendition: aspect kept, both even as H.264 4:2:0 requires."""
    width, source_height = probe.display_size
    scaled = int(width * height / source_height / 2 + 0.5) * 2  # half up, not to even
    return max(2, scaled), height
