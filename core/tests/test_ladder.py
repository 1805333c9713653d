from __future__ import annotations

import pytest
from videoflix_core.ladder import DEFAULT_LADDER, Rung, ladder_from_spec, output_size, plan_ladder
from videoflix_core.transcode import ProbeResult, RenditionSpec


def probe(width: int, height: int, rotation: int = 0) -> ProbeResult:
    return ProbeResult(duration_seconds=3.0, width=width, height=height, rotation=rotation)


def names(rungs: list[Rung]) -> list[str]:
    return [r.name for r in rungs]


def test_default_ladder_has_the_four_rungs_with_caps() -> None:
    assert names(list(DEFAULT_LADDER)) == ["120p", "360p", "720p", "1080p"]
    for rung in DEFAULT_LADDER:
        assert rung.maxrate and rung.bufsize and rung.audio_bitrate
        assert rung.video_bitrate is None  # capped CRF, not average bitrate


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((1920, 1080), ["120p", "360p", "720p", "1080p"]),
        ((3840, 2160), ["120p", "360p", "720p", "1080p"]),
        ((1280, 720), ["120p", "360p", "720p"]),
        ((854, 480), ["120p", "360p"]),
        ((640, 360), ["120p", "360p"]),
        ((320, 240), ["120p"]),
    ],
)
def test_plan_never_upscales(size: tuple[int, int], expected: list[str]) -> None:
    assert names(plan_ladder(probe(*size), DEFAULT_LADDER)) == expected


def test_rotated_phone_video_plans_on_displayed_height() -> None:
    # Stored 1280x720 but rotated 90°: displayed 720 wide, 1280 tall, so 1080p is no upscale.
    assert names(plan_ladder(probe(1280, 720), DEFAULT_LADDER))[-1] == "720p"
    assert names(plan_ladder(probe(1280, 720, rotation=90), DEFAULT_LADDER))[-1] == "1080p"
    # Stored portrait 720x1280 rotated back to landscape: displayed 720 tall.
    assert names(plan_ladder(probe(720, 1280, rotation=-90), DEFAULT_LADDER))[-1] == "720p"
    assert names(plan_ladder(probe(720, 1280, rotation=180), DEFAULT_LADDER))[-1] == "1080p"
    assert output_size(probe(1920, 1080, rotation=90), 720) == (406, 720)


def test_tiny_source_still_gets_one_rendition_at_its_own_height() -> None:
    [only] = plan_ladder(probe(160, 91), DEFAULT_LADDER)
    assert only.name == "120p"
    assert only.height == 90


def test_include_source_height_adds_a_rung_between_rungs() -> None:
    planned = plan_ladder(probe(854, 480), DEFAULT_LADDER, include_source_height=True)
    assert names(planned) == ["120p", "360p", "480p"]
    assert planned[-1].height == 480
    assert planned[-1].maxrate == 3000  # the next rung's caps: never above the source


def test_zero_height_probe_is_refused() -> None:
    with pytest.raises(ValueError):
        plan_ladder(probe(0, 0), DEFAULT_LADDER)


def test_ladder_from_spec_merges_overrides_and_sorts() -> None:
    rungs = ladder_from_spec(
        [RenditionSpec(name="720p", video_bitrate=2000), RenditionSpec(name="240p")]
    )
    assert names(rungs) == ["240p", "720p"]
    assert rungs[1].video_bitrate == 2000
    assert rungs[1].maxrate == 3000
    assert rungs[0] == Rung("240p", 240)
    assert ladder_from_spec(None) == list(DEFAULT_LADDER)


def test_cli_args_only_for_set_values() -> None:
    assert Rung("240p", 240).cli_args() == []
    assert Rung("240p", 240, video_bitrate=300).cli_args() == ["--video-bitrate", "300"]
    assert DEFAULT_LADDER[0].cli_args() == [
        "--maxrate",
        "250",
        "--bufsize",
        "500",
        "--audio-bitrate",
        "64",
    ]


def test_output_size_keeps_aspect_and_is_even() -> None:
    assert output_size(probe(1920, 1080), 360) == (640, 360)
    assert output_size(probe(1920, 1080), 120) == (214, 120)
    w, h = output_size(probe(1000, 562), 360)
    assert w % 2 == 0 and h == 360
