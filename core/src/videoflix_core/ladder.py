"""The rendition ladder and the plan of which rungs fit one source, at which exact size.

The one place with the fit rule: a rung's height is the short side of the displayed picture
(rotation and pixel aspect applied), aspect kept, both sides even, never upscaled (a bigger rung
would only cost storage and bandwidth for no extra detail). The operator and the embedded runner
pass the planned size to the transcoder, which encodes it without re-deciding.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from videoflix_core.transcode import ProbeResult, RenditionSpec


@dataclass(frozen=True)
class Rung:
    """One planned rendition with its encoder rates in kbit/s (None: the transcoder's default)."""

    name: str
    height: int  # the short side the rung stands for ("720p": 720), portrait or landscape
    video_bitrate: int | None = None
    maxrate: int | None = None
    bufsize: int | None = None
    audio_bitrate: int | None = None
    # The exact output (width, height) as displayed, set by plan_ladder: portrait 720p is 720x1280.
    size: tuple[int, int] | None = None

    @property
    def planned_size(self) -> tuple[int, int]:
        """The planned output size; a ladder rung that was never planned has none."""
        if self.size is None:
            raise ValueError(f"rung {self.name} has no planned size (use plan_ladder)")
        return self.size

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
    """The rungs to encode for this source, lowest first, each with its exact output size.

    Only rungs no larger than the displayed source's short side survive. A source smaller than
    every rung still gets one rendition (the smallest rung at the source's own even size) so it
    stays playable. With `include_source_height`, a source between rungs (e.g. 480p) also gets a
    rung at its own short side.
    """
    rungs = sorted(ladder, key=lambda r: (r.height, r.name))
    if not rungs:
        return []
    width, height = probe.display_size
    if width <= 0 or height <= 0:
        raise ValueError("the probe found no video picture (size 0)")
    short = min(width, height)
    even_short = max(2, short - short % 2)
    fitting = [r for r in rungs if r.height <= short]
    if not fitting:
        fitting = [replace(rungs[0], height=even_short)]
    elif include_source_height and fitting[-1].height < even_short and len(fitting) < len(rungs):
        above = rungs[len(fitting)]
        fitting.append(replace(above, name=f"{even_short}p", height=even_short))
    return [replace(r, size=output_size(probe, r.height)) for r in fitting]


def _even(value: float) -> int:
    return max(2, int(value / 2 + 0.5) * 2)  # half up, not to even: stable across platforms


def output_size(probe: ProbeResult, short_side: int) -> tuple[int, int]:
    """(width, height) of a rendition whose short side is `short_side`, as displayed.

    Aspect kept, both even as H.264 4:2:0 requires; at (or within a pixel of) the source's own
    short side it is the source's size made even, so an odd source never scales by a fraction.
    """
    width, height = probe.display_size
    short = min(width, height)
    if short_side >= short - 1:
        return max(2, width - width % 2), max(2, height - height % 2)
    side = short_side - short_side % 2
    if width >= height:
        return _even(side * width / height), side
    return side, _even(side * height / width)
