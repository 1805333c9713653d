"""The chunk plan of a chunked rendition: where each index of an Indexed Job starts and ends.

The one place with the rule. Boundaries fall on the output's fixed keyframe grid (an IDR
exactly every KEYFRAME_SECONDS, the same on every rung), so every chunk starts with a keyframe
and a fragment of the unchunked file, and the joined chunks have exactly its fragments. The
transcoder takes the plan's start times (`chunk --starts`) and never re-decides them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from videoflix_core.transcode import ProbeResult

KEYFRAME_SECONDS = 2  # the transcoder's GOP: its `plan.KEYFRAME_SECONDS`
# 20 s: `bench/chunked.py` measures 10, 20 and 30 s (CPU, bytes, quality, speedup); each chunk
# pays a fixed start-up (pod, source download, probe, 1 s pre-roll decode), which 20 s keeps a
# small share of, while a 10-minute film still gives 30 indexes to spread.
DEFAULT_CHUNK_SECONDS = 20


@dataclass(frozen=True)
class Chunk:
    index: int
    start: float  # seconds on the output timeline, a multiple of the keyframe interval
    end: float  # the next chunk's start; the last chunk ends at the source's duration


def chunk_length(seconds: float, keyframe_seconds: int = KEYFRAME_SECONDS) -> int:
    """A configured length made a whole number of keyframe intervals (at least one)."""
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"chunk length must be positive, not {seconds!r}")
    return max(1, round(seconds / keyframe_seconds)) * keyframe_seconds


def plan_chunks(
    duration_seconds: float,
    chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
    keyframe_seconds: int = KEYFRAME_SECONDS,
) -> list[Chunk]:
    """The chunks of a source: one chunk (the unchunked path) for a source of one chunk or less.

    A remainder shorter than one keyframe interval joins the chunk before it: a pod for a
    sliver of a fragment costs a start-up for nothing.
    """
    if not math.isfinite(duration_seconds) or duration_seconds <= 0:
        raise ValueError(f"duration must be positive, not {duration_seconds!r}")
    length = chunk_length(chunk_seconds, keyframe_seconds)
    # A duration a hair over a whole number of chunks (container rounding) is still that many.
    count = max(1, math.ceil(duration_seconds / length - 1e-6))
    if count > 1 and duration_seconds - (count - 1) * length < keyframe_seconds:
        count -= 1
    starts = [i * length for i in range(count)]
    ends = [*starts[1:], duration_seconds]
    return [
        Chunk(i, float(start), max(float(end), float(start)))
        for i, (start, end) in enumerate(zip(starts, ends, strict=True))
    ]


def starts_arg(chunks: list[Chunk]) -> str:
    """The transcoder's `--starts` value: every chunk's start, comma-separated, in seconds."""
    return ",".join(f"{c.start:g}" for c in chunks)


# A source is constant-rate when its average rate is its stream rate (r_frame_rate) to within
# rounding (the probe rounds to 3 decimals): only then is a chunk frame-exact (see the
# transcoder README, "Known gaps": VFR timestamps off the encoder's grid move at a chunk start).
_RATE_TOLERANCE = 0.01


def is_constant_rate(source: ProbeResult) -> bool:
    return (
        source.fps is not None
        and source.max_fps is not None
        and source.fps > 0
        and abs(source.fps - source.max_fps) <= _RATE_TOLERANCE
    )


def chunk_plan(source: ProbeResult, chunk_seconds: float) -> list[Chunk] | None:
    """The chunks a source's renditions are encoded in, or None for the unchunked path.

    The one decision "chunked or not" of the operator (and any other runner): chunking is on
    (`chunk_seconds` > 0), the source is constant-rate (frame-exact joins) and longer than one
    chunk. A probe of an older transcoder without the stream rate is not chunked.
    """
    if chunk_seconds <= 0 or source.duration_seconds <= 0 or not is_constant_rate(source):
        return None
    chunks = plan_chunks(source.duration_seconds, chunk_seconds)
    return chunks if len(chunks) > 1 else None


_INDEX_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")


def parse_indexes(text: str | None) -> frozenset[int]:
    """An Indexed Job's `status.completedIndexes`/`failedIndexes` ("0-3,5") as a set of
    indexes; an empty or malformed part says nothing (never a crash on a newer format)."""
    found: set[int] = set()
    for part in (text or "").split(","):
        match = _INDEX_RANGE.match(part.strip())
        if match is None:
            continue
        first = int(match[1])
        last = int(match[2]) if match[2] is not None else first
        found.update(range(first, last + 1))
    return frozenset(found)


def format_indexes(indexes: frozenset[int] | set[int]) -> str:
    """The inverse of `parse_indexes`, in Kubernetes' own compact form ("0-3,5")."""
    parts: list[str] = []
    run: list[int] = []
    for index in sorted(indexes):
        if run and index == run[-1] + 1:
            run.append(index)
            continue
        if run:
            parts.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [index]
    if run:
        parts.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(parts)


def default_audio_kbps(height: int) -> int:
    """The AAC rate the transcoder gives a rung without its own (its `plan.default_rung`): the
    chunked path encodes the audio in its own step, so the operator must name the rate."""
    return 64 if height <= 120 else 96 if height <= 360 else 128
