"""The chunked path's step rules shared by the operator and the embedded mode."""

from __future__ import annotations

from videoflix_core.chunk_steps import audio_kbps, intermediates_prefix, video_rate_args
from videoflix_core.chunks import plan_chunks
from videoflix_core.ladder import DEFAULT_LADDER, plan_ladder
from videoflix_core.status import Aggregate, spec_hash
from videoflix_core.transcode import (
    Phase,
    ProbeResult,
    SourceRef,
    VideoTranscodeSpec,
    VideoTranscodeStatus,
)

SPEC = VideoTranscodeSpec(
    video_id=42, transcode_generation=3, source=SourceRef(bucket="bkt", key="videos/42/source/a")
)


def _agg(phase: Phase, chunked: bool = True) -> Aggregate:
    return Aggregate(
        status=VideoTranscodeStatus(phase=phase), chunks=plan_chunks(60, 10) if chunked else []
    )


def test_intermediates_go_once_when_a_chunked_transcode_ends() -> None:
    running = VideoTranscodeStatus(phase=Phase.TRANSCODING)
    expected = f"videos/42/chunks/3-{spec_hash(SPEC)}/"
    assert intermediates_prefix(SPEC, _agg(Phase.SUCCEEDED), running) == expected
    assert intermediates_prefix(SPEC, _agg(Phase.FAILED), None) == expected  # useless now
    assert intermediates_prefix(SPEC, _agg(Phase.TRANSCODING), running) is None  # still needed
    ended = VideoTranscodeStatus(phase=Phase.SUCCEEDED)
    assert intermediates_prefix(SPEC, _agg(Phase.SUCCEEDED), ended) is None  # done already
    assert intermediates_prefix(SPEC, _agg(Phase.SUCCEEDED, chunked=False), running) is None


def test_the_audio_rate_leaves_the_video_arguments_for_the_audio_step() -> None:
    planned = plan_ladder(ProbeResult(duration_seconds=60, width=1280, height=720), DEFAULT_LADDER)
    rung = next(r for r in planned if r.name == "720p")
    assert "--audio-bitrate" in rung.cli_args()
    assert "--audio-bitrate" not in video_rate_args(rung)
    assert audio_kbps(rung) == rung.audio_bitrate
