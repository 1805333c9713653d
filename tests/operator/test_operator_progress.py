"""Live progress end to end: the operator reads the running pod's progress lines through the API
(`pods/log`, the kubelet's log endpoint) and moves `status.progress` and the videos row between
the values finished steps alone give."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.operator.conftest import Platform, _ffmpeg

pytestmark = pytest.mark.cluster


def test_progress_moves_while_a_step_runs(make_platform: Any, tmp_path: Path) -> None:
    # Long enough that the one encode runs for several seconds (the transcoder prints its percent
    # every 2 s; 30 s of 1080p to 720p is about 10 s here); the operator reads logs every second
    # here instead of every 10.
    source = _ffmpeg(
        tmp_path / "long.mp4",
        *("-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=25:duration=30"),
        *("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"),
    )
    # Unchunked: this is the live progress of one long pod (a chunked rung counts its indexes).
    p: Platform = make_platform(progress_seconds="1", chunk_seconds="0")
    vid, name = p.transcode(source, renditions=["720p"], thumbnail=False)
    # One rendition, no thumbnail: finished steps alone give 0, 5 (probed) and 100.
    step_values = {0, 5, 100}
    seen: list[tuple[str, int]] = []
    row_seen: list[int] = []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        cr = p.cr(name) or {}
        st = cr.get("status") or {}
        if "progress" in st:
            seen.append((st.get("phase", ""), st["progress"]))
        row_seen.append(p.video(vid).progress)
        if st.get("phase") in ("Succeeded", "Failed"):
            break
        time.sleep(0.3)
    assert seen and seen[-1] == ("Succeeded", 100), (seen, p.operator.log()[-3000:])
    progress = [value for _, value in seen]
    assert progress == sorted(progress), f"progress went back: {progress}"
    live = [(phase, v) for phase, v in seen if v not in step_values]
    assert live, f"no live progress between step counts: {seen}"
    assert all(phase == "Transcoding" and 5 < v < 100 for phase, v in live), live
    # The same numbers reach the videos row (through the generation-guarded outcome write).
    assert any(v not in step_values for v in row_seen), row_seen
    assert row_seen == sorted(row_seen), f"row progress went back: {row_seen}"
    assert p.video(vid).progress == 100
