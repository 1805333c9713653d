"""The chunk plan of a chunked rendition: where each index of an Indexed Job starts and ends.

The one place with the rule. Boundaries fall on the output's fixed keyframe grid (an IDR
exactly every KEYFRAME_SECONDS, the same on every rung), so every chunk starts with a keyframe
and a fragment of the unchunked file, and the joined chunks have exactly its fragments. The
transcoder takes the plan's start times (`chunk --starts`) and never re-decides them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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
