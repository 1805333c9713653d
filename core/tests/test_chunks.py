"""The chunk plan: keyframe-grid boundaries, one chunk for short sources, no slivers."""

from __future__ import annotations

import pytest
from videoflix_core.chunks import DEFAULT_CHUNK_SECONDS, chunk_length, plan_chunks, starts_arg


def test_a_source_of_one_chunk_or_less_is_one_chunk() -> None:
    for duration in (0.3, 12.0, 20.0, 20.0000001):
        chunks = plan_chunks(duration, 20)
        assert [(c.index, c.start, c.end) for c in chunks] == [(0, 0.0, duration)]


def test_boundaries_fall_on_the_keyframe_grid_and_cover_the_source() -> None:
    chunks = plan_chunks(125.4, 20)
    assert [c.start for c in chunks] == [0, 20, 40, 60, 80, 100, 120]
    assert all(c.start % 2 == 0 for c in chunks)
    assert [c.end for c in chunks[:-1]] == [c.start for c in chunks[1:]]
    assert chunks[-1].end == 125.4
    assert starts_arg(chunks) == "0,20,40,60,80,100,120"


def test_a_remainder_under_one_keyframe_interval_joins_the_last_chunk() -> None:
    chunks = plan_chunks(61.5, 10)
    assert [c.start for c in chunks] == [0, 10, 20, 30, 40, 50]
    assert chunks[-1].end == 61.5
    assert len(plan_chunks(62.0, 10)) == 7  # a whole keyframe interval is worth its own pod


def test_a_chunk_length_is_a_whole_number_of_keyframe_intervals() -> None:
    assert chunk_length(7) == 8
    assert chunk_length(0.5) == 2
    assert [c.start for c in plan_chunks(12, 5)] == [0, 4, 8]
    assert DEFAULT_CHUNK_SECONDS % 2 == 0
    with pytest.raises(ValueError):
        plan_chunks(0, 10)
    with pytest.raises(ValueError):
        chunk_length(-1)
