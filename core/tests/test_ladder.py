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


def sizes(rungs: list[Rung]) -> dict[str, tuple[int, int]]:
    return {r.name: r.planned_size for r in rungs}


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((1920, 1080), ["120p", "360p", "720p", "1080p"]),
        ((3840, 2160), ["120p", "360p", "720p", "1080p"]),
        ((1280, 720), ["120p", "360p", "720p"]),
        ((854, 480), ["120p", "360p"]),
        ((640, 360), ["120p", "360p"]),
        ((320, 240), ["120p"]),
        ((720, 1280), ["120p", "360p", "720p"]),  # portrait: the short side decides
        ((1080, 1920), ["120p", "360p", "720p", "1080p"]),
    ],
)
def test_plan_never_upscales(size: tuple[int, int], expected: list[str]) -> None:
    planned = plan_ladder(probe(*size), DEFAULT_LADDER)
    assert names(planned) == expected
    for rung in planned:
        w, h = rung.planned_size
        assert w <= size[0] and h <= size[1] and w % 2 == 0 and h % 2 == 0
        assert min(w, h) == rung.height


def test_portrait_phone_video_plans_on_the_short_side() -> None:
    # The issue: a 720x1280 phone video got a 1080p rung the transcoder refused as an upscale.
    planned = plan_ladder(probe(720, 1280), DEFAULT_LADDER)
    assert sizes(planned) == {"120p": (120, 214), "360p": (360, 640), "720p": (720, 1280)}
    assert sizes(plan_ladder(probe(1280, 720), DEFAULT_LADDER)) == {
        "120p": (214, 120),
        "360p": (640, 360),
        "720p": (1280, 720),
    }


@pytest.mark.parametrize("rotation", [0, 90, 180, 270, -90])
def test_rotation_is_already_applied_by_the_probe(rotation: int) -> None:
    # The probe reports width/height as displayed; `rotation` must not swap them a second time.
    portrait = plan_ladder(probe(720, 1280, rotation=rotation), DEFAULT_LADDER)
    assert sizes(portrait) == {"120p": (120, 214), "360p": (360, 640), "720p": (720, 1280)}
    landscape = plan_ladder(probe(1920, 1080, rotation=rotation), DEFAULT_LADDER)
    assert sizes(landscape)["720p"] == (1280, 720)
    assert output_size(probe(1080, 1920, rotation=rotation), 720) == (720, 1280)


def test_tiny_source_still_gets_one_rendition_at_its_own_size() -> None:
    [only] = plan_ladder(probe(160, 91), DEFAULT_LADDER)
    assert only.name == "120p"
    assert only.height == 90
    assert only.planned_size == (160, 90)
    [portrait] = plan_ladder(probe(91, 160), DEFAULT_LADDER)
    assert portrait.planned_size == (90, 160)


def test_odd_source_at_its_own_short_side_is_its_size_made_even() -> None:
    assert sizes(plan_ladder(probe(1281, 721), DEFAULT_LADDER))["720p"] == (1280, 720)
    assert sizes(plan_ladder(probe(641, 361), DEFAULT_LADDER))["360p"] == (640, 360)


def test_unplanned_rung_has_no_size() -> None:
    with pytest.raises(ValueError, match="no planned size"):
        _ = DEFAULT_LADDER[0].planned_size


def test_include_source_height_adds_a_rung_between_rungs() -> None:
    planned = plan_ladder(probe(854, 480), DEFAULT_LADDER, include_source_height=True)
    assert names(planned) == ["120p", "360p", "480p"]
    assert planned[-1].height == 480 and planned[-1].planned_size == (854, 480)
    portrait = plan_ladder(probe(480, 854), DEFAULT_LADDER, include_source_height=True)
    assert sizes(portrait)["480p"] == (480, 854)
    assert planned[-1].maxrate == 3000  # the next rung's caps: never above the source


def test_zero_height_probe_is_refused() -> None:
    with pytest.raises(ValueError):
        plan_ladder(probe(0, 0), DEFAULT_LADDER)
    with pytest.raises(ValueError):
        plan_ladder(probe(1280, 0), DEFAULT_LADDER)


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
    assert output_size(probe(720, 1280), 120) == (120, 214)
    assert output_size(probe(1440, 1080), 360) == (480, 360)  # 4:3, e.g. an anamorphic DV
    w, h = output_size(probe(1000, 562), 360)
    assert w % 2 == 0 and h == 360
