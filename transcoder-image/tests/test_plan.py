"""Pure decisions and command lines, checked without running FFmpeg."""

from __future__ import annotations

import io
import struct

import pytest
from videoflix_transcoder import plan
from videoflix_transcoder.errors import BadInput
from videoflix_transcoder.mp4 import (
    Layout,
    Mp4LayoutError,
    hls_playlist,
    parse_sidx,
    top_level_boxes,
)
from videoflix_transcoder.probe import (
    ProbeResult,
    check_coverage,
    hdr_peak_nits,
    parse_probe,
    rotation_of,
)
from videoflix_transcoder.runner import ProgressParser
from videoflix_transcoder.storage import Location, content_type, parse_uri


def probe(width: int = 1920, height: int = 1080, audio: bool = True, **kw: object) -> ProbeResult:
    fields: dict[str, object] = dict(
        duration_seconds=10.0, width=width, height=height, rotation=0, fps=30.0,
        video_codec="h264", audio_codec="aac" if audio else None, bitrate=5_000_000,
        video_index=0, audio_index=1 if audio else None, coded_width=width,
        coded_height=height, pix_fmt="yuv420p",
    )
    fields.update(kw)
    return ProbeResult(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("display", "short_side", "expected"),
    [
        ((1920, 1080), 720, (1280, 720)),
        ((1920, 1080), 120, (214, 120)),  # 213.3 rounds to the nearest even width
        ((1080, 1920), 720, (720, 1280)),  # portrait stays portrait
        ((854, 480), 360, (640, 360)),
        ((641, 361), 360, (640, 360)),  # odd source: its own size, made even
        ((1920, 1080), 1080, (1920, 1080)),
    ],
)
def test_scaled_size_keeps_aspect_and_is_even(
    display: tuple[int, int], short_side: int, expected: tuple[int, int]
) -> None:
    size = plan.scaled_size(*display, short_side)
    assert size == expected
    assert size[0] % 2 == 0 and size[1] % 2 == 0


@pytest.mark.parametrize(
    ("source", "size"),
    [
        ((1920, 1080), (1280, 720)),
        ((1920, 1080), (214, 120)),  # 213.3 rounded to even
        ((720, 1280), (120, 214)),  # portrait phone video, 120p
        ((720, 1280), (720, 1280)),
        ((641, 361), (640, 360)),  # odd source: its own size, made even
        ((1000, 562), (640, 360)),
    ],
)
def test_planned_sizes_are_encoded_as_asked(
    source: tuple[int, int], size: tuple[int, int]
) -> None:
    rung = plan.default_rung("r", *size)
    [out] = plan.plan_outputs(probe(*source), [rung], ["/o.mp4"])
    assert (out.width, out.height) == size


@pytest.mark.parametrize(
    ("source", "size", "reason"),
    [
        ((854, 480), (1280, 720), "refusing to upscale"),
        ((720, 1280), (1080, 1920), "refusing to upscale"),
        ((720, 1280), (1280, 720), "refusing to upscale"),  # landscape size of a portrait source
        ((1920, 1080), (640, 640), "aspect"),
        ((1920, 1080), (644, 360), "aspect"),  # 4 px off: more than rounding
    ],
)
def test_sizes_that_do_not_fit_the_source_are_refused(
    source: tuple[int, int], size: tuple[int, int], reason: str
) -> None:
    with pytest.raises(BadInput, match=reason):
        plan.plan_outputs(probe(*source), [plan.default_rung("r", *size)], ["/o.mp4"])


@pytest.mark.parametrize("size", [(213, 120), (214, 121), (14, 8), (8640, 4860), (0, 0)])
def test_odd_or_out_of_range_sizes_are_refused(size: tuple[int, int]) -> None:
    with pytest.raises(BadInput, match="not a size we encode"):
        plan.default_rung("r", *size)


def test_thumbnail_sizes_keep_aspect() -> None:
    assert plan.scaled_size(1920, 1080, 720) == (1280, 720)
    assert plan.scaled_size(1080, 1920, 720) == (720, 1280)
    assert plan.poster_size(probe(641, 361)) == (640, 360)


@pytest.mark.parametrize(
    ("value", "threads"),
    [(None, 0), ("", 0), ("2", 2), ("1.5", 2), ("500m", 1), ("4000m", 4), ("junk", 0)],
)
def test_threads_follow_the_cpu_limit(value: str | None, threads: int) -> None:
    assert plan.threads_from_cpu_limit(value) == threads


def test_default_rungs_cap_bitrate_and_grow_with_height() -> None:
    rungs = [plan.default_rung(f"{h}p", h * 16 // 9 // 2 * 2, h) for h in (120, 360, 720, 1080)]
    rates = [r.maxrate_kbps for r in rungs]
    assert rates == sorted(rates) and len(set(rates)) == 4
    assert all(r.bufsize_kbps == 2 * r.maxrate_kbps for r in rungs)
    # The caps follow the short side: portrait 720p is capped like landscape 720p.
    assert plan.default_rung("720p", 720, 1280).maxrate_kbps == rungs[2].maxrate_kbps


def test_overrides_switch_to_abr_and_keep_cap_above_target() -> None:
    rung = plan.with_overrides(
        plan.default_rung("720p", 1280, 720), video_kbps=4000, audio_kbps=160
    )
    assert (rung.video_kbps, rung.maxrate_kbps, rung.bufsize_kbps, rung.audio_kbps) == (
        4000, 4000, 8000, 160,
    )


def _after(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


def test_ladder_decodes_once_and_aligns_keyframes() -> None:
    source = probe()
    rungs = [plan.default_rung(n, w, h) for n, w, h in (("120p", 214, 120), ("720p", 1280, 720))]
    outs = plan.plan_outputs(source, rungs, ["/s/120p/video.mp4", "/s/720p/video.mp4"])
    argv = plan.encode_argv("/s/source", source, outs, threads=2)
    assert argv.count("-i") == 1
    graph = _after(argv, "-filter_complex")[0]
    assert graph.startswith("[0:0]split=2[v0][v1]")
    assert "scale=214:120" in graph and "scale=1280:720" in graph
    assert _after(argv, "-force_key_frames") == ["expr:gte(t,n_forced*2)"] * 2
    assert _after(argv, "-sc_threshold") == ["0", "0"]
    assert _after(argv, "-g") == ["61", "61"]
    assert _after(argv, "-threads") == ["2", "2", "2"]  # decoder + each encoder
    assert _after(argv, "-maxrate") == ["250k", "3000k"]
    assert _after(argv, "-ac") == ["2", "2"]
    assert _after(argv, "-map") == ["[ov0]", "0:1", "[ov1]", "0:1"]
    assert argv[-1] == "/s/720p/video.mp4"
    assert all("global_sidx" in f and "delay_moov" in f for f in _after(argv, "-movflags"))
    assert _after(argv, "-use_editlist") == ["1", "1"]


def test_variable_frame_rate_gop_ceiling_follows_the_densest_rate() -> None:
    source = probe(fps=17.05, max_fps=30.0)
    outs = plan.plan_outputs(source, [plan.default_rung("360p", 640, 360)], ["/o.mp4"])
    argv = plan.encode_argv("/s", source, outs)
    assert _after(argv, "-g") == ["61"] and _after(argv, "-fps_mode") == ["vfr"]


def test_source_without_audio_maps_no_audio() -> None:
    source = probe(audio=False)
    outs = plan.plan_outputs(source, [plan.default_rung("360p", 640, 360)], ["/o.mp4"])
    argv = plan.encode_argv("/s", source, outs)
    assert "-c:a" not in argv and _after(argv, "-map") == ["[ov0]"]
    assert "-threads" not in argv  # no CPU limit: FFmpeg decides
    assert _after(argv, "-filter_complex")[0].startswith("[0:0]null[v0]")


PQ = dict(color_transfer="smpte2084", color_primaries="bt2020", color_space="bt2020nc",
          color_range="tv", pix_fmt="yuv420p10le", bits=10, video_codec="hevc")


def _graph(source: ProbeResult, *sizes: tuple[int, int]) -> str:
    rungs = [plan.default_rung(f"r{i}", *size) for i, size in enumerate(sizes)]
    outs = plan.plan_outputs(source, rungs, [f"/o{i}.mp4" for i in range(len(sizes))])
    return _after(plan.encode_argv("/s", source, outs), "-filter_complex")[0]


def test_bt709_source_keeps_the_cheap_scale_path_and_every_output_is_tagged() -> None:
    source = probe(color_transfer="bt709", color_primaries="bt709", color_space="bt709")
    assert plan.source_colour(source).is_bt709
    assert plan.colour_filters(source, 640, 360) == ["scale=640:360", "setsar=1", "format=yuv420p"]
    rungs = [plan.default_rung("a", 214, 120), plan.default_rung("b", 640, 360)]
    argv = plan.encode_argv("/s", source, plan.plan_outputs(source, rungs, ["/a", "/b"]))
    for flag in ("-color_primaries", "-color_trc", "-colorspace"):
        assert _after(argv, flag) == ["bt709", "bt709"]
    assert _after(argv, "-color_range") == ["tv", "tv"]
    assert _after(argv, "-fps_mode") == ["vfr", "vfr"]


@pytest.mark.parametrize(
    ("transfer", "tin"), [("smpte2084", "smpte2084"), ("arib-std-b67", "arib-std-b67")]
)
def test_hdr_sources_are_tone_mapped_after_scaling(transfer: str, tin: str) -> None:
    source = probe(3840, 2160, **{**PQ, "color_transfer": transfer})
    colour = plan.source_colour(source)
    assert colour.hdr and (colour.matrix, colour.primaries) == ("bt2020nc", "bt2020")
    chain = plan.colour_filters(source, 640, 360)
    # Scaling happens in the first zscale, so the tone-mapper only sees 640x360.
    assert chain[0] == (
        f"zscale=w=640:h=360:f=bicubic:tin={tin}:min=bt2020nc:pin=bt2020:rin=tv:t=linear:npl=100"
    )
    assert chain[1:] == [
        "format=gbrpf32le", "zscale=p=bt709", "tonemap=hable:desat=0:peak=10",
        "zscale=t=bt709:m=bt709:r=tv", "format=yuv420p", "setsar=1",
    ]
    graph = _graph(source, (640, 360), (1280, 720))
    assert graph.count("tonemap=hable") == 2 and graph.startswith("[0:0]split=2[v0][v1]")


@pytest.mark.parametrize(
    ("nits", "peak"),
    [(None, 10.0), (600.0, 6.0), (4000.0, 40.0), (0.5, 1.0), (50.0, 1.0), (1e6, 100.0)],
)
def test_tone_map_peak_is_the_sources_own_never_ffmpegs_guess(nits: float | None,
                                                              peak: float) -> None:
    # Untagged: 1000 nits. Tagged: as tagged, but never below SDR white nor past PQ's 10000.
    source = probe(**{**PQ, "hdr_peak_nits": nits})
    assert plan.tonemap_peak(source) == peak
    assert f"tonemap=hable:desat=0:peak={peak:g}" in plan.colour_filters(source, 640, 360)


def test_untagged_hdr_transfer_alone_still_means_bt2020() -> None:
    colour = plan.source_colour(probe(color_transfer="smpte2084"))
    assert (colour.matrix, colour.primaries, colour.hdr) == ("bt2020nc", "bt2020", True)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        # Untagged SD is BT.601, as players assume; the gamut is left alone when untagged.
        (dict(coded_height=480), ("bt709", "bt709", "smpte170m", False)),
        (dict(coded_height=576, color_space="bt470bg", color_primaries="bt470bg",
              color_transfer="gamma28"), ("bt470bg", "bt470bg", "bt470bg", False)),
        (dict(coded_height=480, color_space="smpte170m"), ("bt709", "bt709", "smpte170m",
                                                           False)),
        (dict(coded_height=1080), ("bt709", "bt709", "bt709", False)),  # untagged HD: BT.709
        (dict(pix_fmt="yuvj420p"), ("bt709", "bt709", "bt709", True)),  # full-range phone MJPEG
        (dict(color_range="pc"), ("bt709", "bt709", "bt709", True)),
    ],
)
def test_sdr_colour_guesses(
    fields: dict[str, object], expected: tuple[str, str, str, bool]
) -> None:
    colour = plan.source_colour(probe(**fields))
    assert (colour.transfer, colour.primaries, colour.matrix, colour.full_range) == expected


def test_bt601_source_is_converted_to_bt709() -> None:
    source = probe(720, 480, coded_height=480, color_space="smpte170m",
                   color_primaries="smpte170m")
    assert plan.colour_filters(source, 640, 360) == [
        "zscale=w=640:h=360:f=bicubic:tin=bt709:min=smpte170m:pin=smpte170m:rin=tv"
        ":t=bt709:m=bt709:p=bt709:r=tv",
        "format=yuv420p", "setsar=1",
    ]
    full = plan.colour_filters(probe(pix_fmt="yuvj420p"), 640, 360)
    assert ":rin=pc:" in full[0] and full[0].endswith(":r=tv")


def test_odd_sized_source_is_resized_before_zscale() -> None:
    # zscale cannot take an odd-sized 4:2:0 picture; swscale resizes it to the even output first.
    source = probe(853, 481, coded_width=853, coded_height=481)
    assert plan.colour_filters(source, 640, 360) == [
        "scale=640:360",
        "zscale=tin=bt709:min=smpte170m:pin=bt709:rin=tv:t=bt709:m=bt709:p=bt709:r=tv",
        "format=yuv420p", "setsar=1",
    ]


@pytest.mark.parametrize(("order", "deinterlaced"), [
    ("tt", True), ("bb", True), ("tb", True), ("progressive", False), (None, False),
])
def test_interlaced_sources_are_deinterlaced_once_before_the_split(
    order: str | None, deinterlaced: bool
) -> None:
    source = probe(1024, 576, coded_height=576, field_order=order)
    graph = _graph(source, (214, 120), (640, 360))
    assert graph.startswith(
        "[0:0]bwdif=mode=send_frame:parity=auto:deint=all,split=2[v0][v1]" if deinterlaced
        else "[0:0]split=2[v0][v1]"
    )
    assert graph.count("bwdif") == (1 if deinterlaced else 0)
    single = _graph(source, (640, 360))
    assert single.startswith("[0:0]bwdif" if deinterlaced else "[0:0]null[v0]")


def test_anamorphic_source_is_scaled_to_its_displayed_size() -> None:
    # 720x576 with 64:45 pixels is shown 1024x576: the planner asks for 640x360, square pixels.
    report = _report([{"index": 0, "codec_type": "video", "codec_name": "mpeg2video",
                       "width": 720, "height": 576, "sample_aspect_ratio": "64:45",
                       "color_space": "bt470bg", "field_order": "tt"}])
    source = parse_probe(report)
    graph = _graph(source, (640, 360))
    assert "w=640:h=360" in graph and graph.endswith("setsar=1[ov0]")
    with pytest.raises(BadInput, match="aspect"):
        _graph(source, (480, 360))  # the stored 4:3 shape is not what viewers see


def test_thumbnails_of_hdr_sources_share_the_tone_mapping() -> None:
    source = probe(3840, 2160, duration_seconds=60.0, **PQ)
    poster = _after(plan.poster_argv("/s", source, "/p.jpg", skip_dark=True), "-vf")[0]
    sprite = _after(
        plan.sprite_argv("/s", source, plan.storyboard_plan(source), "/s.jpg"), "-vf"
    )[0]
    for vf, (w, h) in ((poster, (1280, 720)), (sprite, (160, 90))):
        assert ",".join(plan.colour_filters(source, w, h)) in vf
        assert vf.endswith("zscale=min=bt709:rin=tv:m=bt470bg:r=pc,format=yuvj420p")
    # The poster picks among tone-mapped frames; the sprite tone-maps only the chosen ones.
    assert poster.index("tonemap") < poster.index("signalstats") < poster.index("thumbnail")
    assert sprite.index("select=") < sprite.index("tonemap") < sprite.index("tile=")


def test_interlaced_poster_is_deinterlaced() -> None:
    vf = _after(plan.poster_argv("/s", probe(field_order="bb"), "/p.jpg", skip_dark=False), "-vf")
    assert vf[0].startswith("bwdif=")


def test_storyboard_vtt_points_at_tiles() -> None:
    board = plan.storyboard_plan(probe(duration_seconds=25.0))
    assert (board.interval, board.count, board.columns, board.rows) == (2.0, 13, 10, 2)
    assert (board.tile_width, board.tile_height) == (160, 90)
    vtt = plan.storyboard_vtt(board, 25.0)
    assert vtt.startswith("WEBVTT\n\n00:00:00.000 --> 00:00:02.000\nsprite.jpg#xywh=0,0,160,90")
    assert "00:00:24.000 --> 00:00:25.000\nsprite.jpg#xywh=320,90,160,90" in vtt
    long = plan.storyboard_plan(probe(duration_seconds=3600.0))
    assert long.count == 100 and long.interval == 36.0


def test_poster_skips_intro_and_dark_frames() -> None:
    argv = plan.poster_argv("/s", probe(duration_seconds=60.0), "/p.jpg", skip_dark=True)
    assert _after(argv, "-ss") == ["12.000"] and _after(argv, "-t") == ["5.000"]
    assert "function=greater" in _after(argv, "-vf")[0]
    plain = plan.poster_argv("/s", probe(duration_seconds=60.0), "/p.jpg", skip_dark=False)
    assert "signalstats" not in _after(plain, "-vf")[0]


def _report(streams: list[dict[str, object]], **fmt: object) -> dict[str, object]:
    return {"streams": streams, "format": {"format_name": "mov,mp4,m4a,3gp,3g2,mj2",
                                           "duration": "4.0", "bit_rate": "1000", **fmt}}


def test_probe_parser_reads_rotation_and_skips_cover_art() -> None:
    video = {"index": 1, "codec_type": "video", "codec_name": "h264", "width": 1920,
             "height": 1080, "avg_frame_rate": "30000/1001",
             "side_data_list": [{"side_data_type": "Display Matrix", "rotation": -90}]}
    cover = {"index": 0, "codec_type": "video", "codec_name": "mjpeg", "width": 300,
             "height": 300, "disposition": {"attached_pic": 1}}
    result = parse_probe(_report([cover, video]))
    assert (result.width, result.height, result.rotation, result.video_index) == (
        1080, 1920, 270, 1,
    )
    assert result.fps == pytest.approx(29.97, abs=0.01)
    assert result.audio_codec is None


def test_hdr_peak_is_maxcll_else_the_mastering_peak_frames_before_container() -> None:
    # As ffprobe prints them: the decoded frames' SEI, then the container's boxes.
    mastering = {"side_data_type": "Mastering display metadata", "max_luminance": "40000000/10000"}
    light = {"side_data_type": "Content light level metadata", "max_content": 600}
    unknown = {"side_data_type": "Content light level metadata", "max_content": 0}
    frames = {"frames": [{"side_data_list": [mastering, light]}]}
    assert hdr_peak_nits(frames) == 600.0
    assert hdr_peak_nits({"frames": [{"side_data_list": [mastering, unknown]}]}) == 4000.0
    streams = {"streams": [{"side_data_list": [{**light, "max_content": 1000}]}]}
    assert hdr_peak_nits(frames, streams) == 600.0
    assert hdr_peak_nits({"frames": [{}]}, streams) == 1000.0
    assert hdr_peak_nits({"frames": [{"side_data_list": [unknown]}]}, {"streams": [{}]}) is None


def test_probe_parser_widens_anamorphic_pixels() -> None:
    video = {"index": 0, "codec_type": "video", "codec_name": "mpeg2video", "width": 720,
             "height": 576, "sample_aspect_ratio": "64:45"}
    assert parse_probe(_report([video])).width == 1024


@pytest.mark.parametrize(
    ("report", "reason"),
    [
        ({"error": {"string": "Invalid data found when processing input"}},
         "not a readable video file"),
        (_report([{"index": 0, "codec_type": "audio", "codec_name": "mp3"}]), "audio only: mp3"),
        (_report([{"index": 0, "codec_type": "video", "codec_name": "png", "width": 9,
                   "height": 9}], format_name="png_pipe"), r"still image \(png\)"),
        (_report([{"index": 0, "codec_type": "video", "codec_name": "ansi", "width": 640,
                   "height": 400}], format_name="tty"), "text file"),
        (_report([{"index": 0, "codec_type": "video", "codec_name": "h264", "width": 64,
                   "height": 64}], duration="N/A"), "no duration"),
    ],
)
def test_probe_parser_refuses_non_videos(report: dict[str, object], reason: str) -> None:
    with pytest.raises(BadInput, match=reason):
        parse_probe(report)


def test_probe_parser_reads_colour_interlacing_and_bit_depth() -> None:
    video = {"index": 0, "codec_type": "video", "codec_name": "hevc", "width": 3840,
             "height": 2160, "pix_fmt": "yuv420p10le", "color_transfer": "smpte2084",
             "color_primaries": "bt2020", "color_space": "bt2020nc", "color_range": "tv",
             "field_order": "progressive"}
    result = parse_probe(_report([video]))
    assert (result.color_transfer, result.color_primaries, result.color_space) == (
        "smpte2084", "bt2020", "bt2020nc",
    )
    assert (result.color_range, result.field_order, result.bits) == ("tv", "progressive", 10)
    plain = parse_probe(_report([{"index": 0, "codec_type": "video", "codec_name": "h264",
                                  "width": 64, "height": 64, "pix_fmt": "yuv420p",
                                  "color_space": "unknown", "field_order": "unknown"}]))
    assert (plain.color_space, plain.field_order, plain.bits) == (None, None, 8)


def test_probe_parser_picks_the_default_audio_stream() -> None:
    video = {"index": 0, "codec_type": "video", "codec_name": "h264", "width": 64, "height": 64}
    commentary = {"index": 1, "codec_type": "audio", "codec_name": "aac",
                  "disposition": {"default": 0}}
    main = {"index": 2, "codec_type": "audio", "codec_name": "ac3",
            "disposition": {"default": 1}}
    assert parse_probe(_report([video, commentary, main])).audio_index == 2
    assert parse_probe(_report([video, commentary])).audio_index == 1


def test_rotation_from_legacy_tag() -> None:
    assert rotation_of({"tags": {"rotate": "180"}}) == 180
    assert rotation_of({}) == 0


def test_coverage_tolerates_a_frame_but_not_a_missing_half() -> None:
    check_coverage(10.0, 9.96)
    with pytest.raises(BadInput, match="truncated"):
        check_coverage(10.0, 4.0)


def test_progress_parser_reports_percent_and_speed() -> None:
    parser = ProgressParser(10.0)
    lines = ["frame=10", "out_time_us=2500000", "speed=1.5x", "progress=continue"]
    results = [parser.feed(line) for line in lines]
    assert results[:3] == [None, None, None]
    assert results[3] is not None and (results[3].percent, results[3].speed) == (25.0, 1.5)
    assert parser.feed("out_time_us=N/A") is None
    end = parser.feed("progress=end")
    assert end is not None and end.percent == 100.0


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def test_boxes_and_sidx_give_a_byte_range_playlist() -> None:
    sidx_payload = struct.pack(">BxxxIIIIHH", 0, 1, 1000, 0, 0, 0, 2)
    sidx_payload += struct.pack(">III", 300, 2000, 0x90000000)
    sidx_payload += struct.pack(">III", 200, 1500, 0x90000000)
    index = parse_sidx(sidx_payload)
    assert (index.timescale, index.durations, index.sizes) == (1000, [2000, 1500], [300, 200])
    data = _box(b"ftyp", b"x" * 12) + _box(b"moov", b"y" * 30)
    assert [(b.type, b.offset, b.size) for b in top_level_boxes(io.BytesIO(data))] == [
        ("ftyp", 0, 20), ("moov", 20, 38),
    ]
    with pytest.raises(Mp4LayoutError):
        top_level_boxes(io.BytesIO(data[:-3]))
    text = hls_playlist(Layout(58, [(100, 300, 2.0), (400, 200, 1.5)]), "video.mp4")
    assert '#EXT-X-MAP:URI="video.mp4",BYTERANGE="58@0"' in text
    assert "#EXTINF:1.500000,\n#EXT-X-BYTERANGE:200@400\nvideo.mp4" in text
    assert "#EXT-X-TARGETDURATION:2" in text and text.endswith("#EXT-X-ENDLIST\n")


def test_uris_and_content_types() -> None:
    assert parse_uri("s3://media/videos/42", prefix=True) == Location("media", "videos/42/")
    assert parse_uri("s3://media/videos/42/source/a.mp4") == Location(
        "media", "videos/42/source/a.mp4"
    )
    assert parse_uri("/data/videos/42/").join("720p/video.mp4").key == (
        "/data/videos/42/720p/video.mp4"
    )
    for bad in ("s3://", "s3://bucket", "http://x/y", ""):
        with pytest.raises(BadInput):
            parse_uri(bad)
    assert content_type("a/index.m3u8") == "application/vnd.apple.mpegurl"
    assert content_type("seg.m4s") == "video/iso.segment"
    assert content_type("video.mp4") == "video/mp4"
    assert content_type("poster.JPG") == "image/jpeg"
    assert content_type("storyboard.vtt") == "text/vtt"
