"""Chunked renditions against the unchunked encode, with real FFmpeg on a 12 s source.

The same ladder is encoded once by `ladder` and once as 3 chunks of 4 s (`chunk` x 3, `audio`
once, `assemble` per rung). The assembled file must be the unchunked file's twin: the same
frames at the same timestamps (so nothing dropped, doubled or shifted at a join and the
audio/video offset unchanged), the same audio packets, the same box layout, fragment decode
times, sizes and playlist durations. Only the video bytes inside may differ (each chunk's
encoder starts afresh).
"""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from videoflix_transcoder import chunked, fmp4, plan
from videoflix_transcoder.errors import BadInput
from videoflix_transcoder.mp4 import read_layout, top_level_boxes
from videoflix_transcoder.probe import ProbeResult

STARTS = "0,4,8"
JOINS = (4.0, 8.0)
RUNGS = [("120p", 214, 120), ("180p", 320, 180)]
AUDIO = {"120p": 64, "180p": 96}  # the transcoder's default audio rate of each rung
FPS = 30


@dataclass(frozen=True)
class Encoded:
    source: Path
    unchunked: dict[str, Path]
    chunked: dict[str, Path]
    chunk_results: list[dict[str, Any]]
    assemble_results: dict[str, dict[str, Any]]


@pytest.fixture(scope="module")
def encoded(tmp_path_factory: pytest.TempPathFactory, tx: Any) -> Encoded:
    d = tmp_path_factory.mktemp("chunked")
    source = d / "source.mp4"
    # 44.1 kHz audio: the AAC step resamples to 48 kHz, as for most phone videos.
    tx.ffmpeg("-f", "lavfi", "-i", f"testsrc2=size=320x180:rate={FPS}:duration=12",
              "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100:duration=12",
              "-ac", "2", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
              "-c:a", "aac", str(source))
    rung_args = [a for name, w, h in RUNGS for a in ("--rung", f"{name}:{w}x{h}")]
    run = tx.transcoder("ladder", "--source", str(source), "--dest", str(d / "un"), *rung_args)
    assert run.code == 0, run.stderr
    dest = d / "ch"
    chunk_results = []
    for index in range(3):
        # Index 1 comes from the Indexed Job's environment, the others from --index.
        by_env = index == 1
        run = tx.transcoder(
            "chunk", "--source", str(source), "--dest", str(dest), "--starts", STARTS,
            *([] if by_env else ["--index", str(index)]), *rung_args,
            env={"JOB_COMPLETION_INDEX": str(index)} if by_env else None,
        )
        assert run.code == 0, run.stderr
        chunk_results.append(run.result["chunk"])
    run = tx.transcoder("audio", "--source", str(source), "--dest", str(dest),
                        "--bitrate", "64", "--bitrate", "96", "--bitrate", "64")
    assert run.code == 0, run.stderr
    assert [a["bitrate"] for a in run.result["audio"]] == [64, 96]  # each rate once
    assembled = {}
    for name, _, _ in RUNGS:
        run = tx.transcoder("assemble", "--dest", str(dest), "--name", name,
                            "--starts", STARTS, "--audio-bitrate", str(AUDIO[name]))
        assert run.code == 0, run.stderr
        assembled[name] = run.result["renditions"][0]
    return Encoded(
        source,
        {name: d / "un" / name / "video.mp4" for name, _, _ in RUNGS},
        {name: dest / name / "video.mp4" for name, _, _ in RUNGS},
        chunk_results,
        assembled,
    )


_PACKETS: dict[tuple[Path, str, str], list[tuple[str, ...]]] = {}


def _packets(tx: Any, path: Path, stream: str, fields: str) -> list[tuple[str, ...]]:
    """ffprobe's packets of one stream, once per file (the files do not change)."""
    key = (path, stream, fields)
    if key not in _PACKETS:
        report = tx.ffprobe(path, "-select_streams", stream, "-show_entries",
                            f"packet={fields}")
        _PACKETS[key] = [tuple(str(p.get(k)) for k in fields.split(",")) for p in
                         report["packets"]]
    return _PACKETS[key]


def test_each_chunk_encodes_exactly_its_frames_video_only(encoded: Encoded, tx: Any) -> None:
    assert [c["index"] for c in encoded.chunk_results] == [0, 1, 2]
    assert [(c["start"], c["end"]) for c in encoded.chunk_results] == [
        (0.0, 4.0), (4.0, 8.0), (8.0, None)
    ]
    for result in encoded.chunk_results:
        assert [r["frames"] for r in result["rungs"]] == [4 * FPS, 4 * FPS]
        for rung in result["rungs"]:
            assert set(tx.streams(rung["file"])) == {"video"}  # the audio is encoded once
            assert re.search(r"chunks/(120p|180p)/0000[0-2]\.mp4$", rung["file"])


def test_frames_and_timestamps_equal_the_unchunked_encode(encoded: Encoded, tx: Any) -> None:
    for name, _, _ in RUNGS:
        un, ch = encoded.unchunked[name], encoded.chunked[name]
        video = _packets(tx, ch, "v:0", "pts,dts,duration,flags")
        assert len(video) == 12 * FPS
        # Same frames at the same times, keyframes on the same grid: nothing dropped, doubled
        # or moved at a join, and the edit list still trims the same B-frame delay.
        assert video == _packets(tx, un, "v:0", "pts,dts,duration,flags")
        assert tx.keyframe_times(ch) == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
        pts = sorted(int(p[0]) for p in video)
        assert len(set(b - a for a, b in itertools.pairwise(pts))) == 1  # no gaps


def test_audio_is_the_unchunked_audio_and_in_sync_at_every_join(
    encoded: Encoded, tx: Any
) -> None:
    for name, _, _ in RUNGS:
        un, ch = encoded.unchunked[name], encoded.chunked[name]
        audio = _packets(tx, ch, "a:0", "pts,dts,size")
        assert audio == _packets(tx, un, "a:0", "pts,dts,size")
        ticks = [int(t) for t, _, _ in audio]
        assert {b - a for a, b in itertools.pairwise(ticks)} == {1024}  # 48 kHz, no join clicks
        times = [float(t) for (t,) in _packets(tx, ch, "a:0", "pts_time")]
        video = [float(t) for (t,) in _packets(tx, ch, "v:0", "pts_time")]
        for join in JOINS:
            first = min(t for t in video if t >= join - 1e-6)
            audio_at = min(t for t in times if t >= join - 1e-6)
            # The chunk's first frame is at the join; the audio sample there is where the
            # unchunked file has it: the offset between the two is under a frame.
            assert abs(first - join) < 1e-3
            assert abs(audio_at - join) <= 1 / FPS


def test_duration_size_and_result_equal_the_unchunked(encoded: Encoded, tx: Any) -> None:
    for name, width, height in RUNGS:
        un = tx.streams(encoded.unchunked[name])
        ch = tx.streams(encoded.chunked[name])
        for key in ("width", "height", "codec_name", "profile", "pix_fmt", "color_space"):
            assert ch["video"].get(key) == un["video"].get(key)
        assert (ch["video"]["width"], ch["video"]["height"]) == (width, height)
        assert (ch["audio"]["sample_rate"], ch["audio"]["channels"]) == ("48000", 2)
        fmt_un = tx.ffprobe(encoded.unchunked[name], "-show_format")["format"]
        fmt_ch = tx.ffprobe(encoded.chunked[name], "-show_format")["format"]
        assert fmt_ch["duration"] == fmt_un["duration"]
        result = encoded.assemble_results[name]
        assert (result["width"], result["height"]) == (width, height)
        assert result["codecs"].startswith("avc1.") and result["codecs"].endswith(",mp4a.40.2")
        assert result["file"].endswith(f"ch/{name}/video.mp4")
        assert result["playlist"].endswith(f"ch/{name}/index.m3u8")
        # Only the encoders' fresh starts differ: the bytes stay within a few percent.
        ratio = result["bytes"] / encoded.unchunked[name].stat().st_size
        assert 0.9 < ratio < 1.1


def _fragments(path: Path) -> list[list[tuple[int, int, int]]]:
    """(track, tfdt, samples) of every traf of every fragment."""
    return [
        [(r.track_id, r.decode_time, len(r.samples)) for r in f.runs]
        for f in fmp4.read_track_file(path).fragments
    ]


def test_assembled_file_has_the_published_layout(encoded: Encoded, tx: Any) -> None:
    for name, _, _ in RUNGS:
        un, ch = encoded.unchunked[name], encoded.chunked[name]
        with un.open("rb") as a, ch.open("rb") as b:
            kinds_un = [box.type for box in top_level_boxes(a)]
            kinds_ch = [box.type for box in top_level_boxes(b)]
        assert kinds_ch == kinds_un
        assert kinds_ch[:4] == ["ftyp", "moov", "sidx", "sidx"] and kinds_ch[-1] == "mfra"
        # Every fragment holds both tracks at the unchunked file's decode times.
        assert _fragments(ch) == _fragments(un)
        layout, ref = read_layout(ch), read_layout(un)
        assert [s for _, _, s in layout.segments] == [s for _, _, s in ref.segments]
        playlist = (ch.parent / "index.m3u8").read_text()
        ref_playlist = (un.parent / "index.m3u8").read_text()
        assert re.findall(r"#EXTINF:.*", playlist) == re.findall(r"#EXTINF:.*", ref_playlist)
        data = ch.read_bytes()
        for offset, size in re.findall(r"#EXT-X-BYTERANGE:(\d+)@(\d+)", playlist):
            assert data[int(size) + 4:int(size) + 8] == b"moof"
            assert int(size) + int(offset) <= len(data)
        # The whole file and the HLS playlist decode without an error, every frame once.
        for target in (str(ch), str(ch.parent / "index.m3u8")):
            proc = subprocess.run(
                ["ffmpeg", "-v", "error", "-allowed_extensions", "ALL", "-i", target,
                 "-f", "null", "-"] if target.endswith(".m3u8") else
                ["ffmpeg", "-v", "error", "-i", target, "-f", "null", "-"],
                capture_output=True, text=True, timeout=60,
            )
            assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr


def test_rewriting_an_unchunked_file_from_its_samples_gives_it_back_byte_for_byte(
    encoded: Encoded, tmp_path: Path
) -> None:
    """The writer follows FFmpeg's own rules (tfhd defaults, trun flags, sidx, mfra), and the
    audio is dealt to fragments as FFmpeg interleaves it."""
    source = encoded.unchunked["180p"]
    parsed = fmp4.read_track_file(source)
    video, sound = parsed.track("vide"), parsed.track("soun")
    video_runs = [r for f in parsed.fragments for r in f.runs if r.track_id == video.track_id]
    bounds = [Fraction(r.decode_time - video.shift, video.timescale) for r in video_runs]
    audio_runs = fmp4.split_by_time(
        list(parsed.samples(sound.track_id)), sound, bounds, source
    )
    target = tmp_path / "rewritten.mp4"
    fmp4.write_file(
        target, parsed.ftyp, fmp4.moov_box(parsed.mvhd, parsed.tracks, parsed.udta),
        parsed.tracks, [fmp4.Fragment([v, a]) for v, a in zip(video_runs, audio_runs,
                                                                   strict=True)],
    )
    assert target.read_bytes() == source.read_bytes()


def test_bad_chunk_requests_exit_2_and_a_missing_chunk_exits_1(
    encoded: Encoded, tx: Any, tmp_path: Path
) -> None:
    base = ["--source", str(encoded.source), "--dest", str(tmp_path), "--rung", "120p:214x120"]
    run = tx.transcoder("chunk", *base, "--starts", "0,3", "--index", "0")
    assert run.code == 2 and "keyframe grid" in run.result["error"]
    run = tx.transcoder("chunk", *base, "--starts", "0,4,40", "--index", "2")
    assert run.code == 2 and "after the source ends" in run.result["error"]
    run = tx.transcoder("assemble", "--dest", str(tmp_path), "--name", "120p",
                        "--starts", STARTS)
    assert run.code == 1 and "missing chunk output chunks/120p/00000.mp4" in run.result["error"]
    assert not (tmp_path / "120p").exists()
    # --work names the intermediates' folder (the operator's chunks/<generation>-<spec-hash>).
    run = tx.transcoder("assemble", "--dest", str(tmp_path), "--name", "120p",
                        "--starts", STARTS, "--work", "chunks/3-1a2b3c4d")
    assert run.code == 1 and "missing chunk output chunks/3-1a2b3c4d/120p/00000.mp4" in (
        run.result["error"]
    )
    for bad in ("../x", "/abs", "chunks//x", "chunks/.."):
        run = tx.transcoder("assemble", "--dest", str(tmp_path), "--name", "120p",
                            "--starts", STARTS, "--work", bad)
        assert run.code == 2 and "bad --work" in run.result["error"], bad


def test_starts_and_index_are_checked_before_any_work() -> None:
    for text, reason in (("0,3", "keyframe grid"), ("4,8", "start at 0"), ("0,8,4", "increase"),
                         ("0,x", "expected seconds")):
        with pytest.raises(BadInput, match=reason):
            chunked.parse_starts(text)
    starts = chunked.parse_starts("0,4,8")
    assert chunked.window(starts, 2) == chunked.Window(2, Fraction(8), None)
    with pytest.raises(BadInput, match="outside"):
        chunked.window(starts, 3)
    assert chunked.chunk_index(None, {"JOB_COMPLETION_INDEX": "2"}) == 2
    assert chunked.chunk_index(1, {"JOB_COMPLETION_INDEX": "2"}) == 1  # --index wins
    with pytest.raises(BadInput, match="JOB_COMPLETION_INDEX"):
        chunked.chunk_index(None, {"JOB_COMPLETION_INDEX": ""})


def _probe(**overrides: object) -> ProbeResult:
    fields: dict[str, object] = dict(
        duration_seconds=12.0, width=320, height=180, rotation=0, fps=30.0, video_codec="h264",
        audio_codec="aac", bitrate=500_000, video_index=0, audio_index=1, coded_width=320,
        coded_height=180, pix_fmt="yuv420p", color_transfer="bt709", color_primaries="bt709",
        color_space="bt709", color_range="tv",
    )
    fields.update(overrides)
    return ProbeResult(**fields)  # type: ignore[arg-type]


def test_chunk_command_line_seeks_before_the_window_and_trims_exactly_it() -> None:
    starts = chunked.parse_starts(STARTS)
    out = [plan.Output(plan.default_rung("120p", 214, 120), 214, 120, "o.mp4")]
    first = chunked.chunk_argv("in.mp4", _probe(), out, chunked.window(starts, 0))
    assert "-ss" not in first  # chunk 0 decodes as the unchunked run does
    assert first[first.index("-filter_complex") + 1].startswith(
        "[0:0]trim=start=0.000000:end=4.000000,null[v0];"
    )
    last = chunked.chunk_argv("in.mp4", _probe(field_order="tt"), out,
                              chunked.window(starts, 2))
    assert last[last.index("-ss") + 1] == "7.000000"  # PREROLL_SECONDS before the start
    graph = last[last.index("-filter_complex") + 1]
    # Deinterlacing sees the pre-roll frames; the last chunk runs to the source's end.
    assert graph.startswith("[0:0]bwdif=mode=send_frame:parity=auto:deint=all,"
                            "trim=start=1.000000,setpts=PTS-1.000000/TB,null[v0]")
    assert "-an" in last and "expr:gte(t,n_forced*2)" in last
    with pytest.raises(BadInput):
        chunked.window(starts, 3)


SEEKS = (1.0, 5.0, 9.0)  # one in each chunk
RATE = 4  # playback rate: the 12 s play in ~3 s
HLS_JS = (Path(__file__).resolve().parents[2]
          / "api/src/videoflix_api/web/static/vendor/hls.js/hls.min.js")

# Installed before playback starts: what the page saw, kept in the page so nothing is lost
# between Playwright round trips. `stalled` is recorded with `waiting`: either at a join would
# be a viewer-visible hitch.
_RECORD_JS = """() => {
    const v = document.getElementById('v');
    window.seen = {times: [], stalls: [], errors: []};
    v.addEventListener('timeupdate', () => window.seen.times.push(v.currentTime));
    for (const kind of ['waiting', 'stalled'])
        v.addEventListener(kind, () => window.seen.stalls.push([kind, v.currentTime]));
    v.addEventListener('error', () => window.seen.errors.push('media:' + v.error.code));
}"""

_SEEK_AND_PLAY_ON_JS = """(t) => new Promise(done => {
    const v = document.getElementById('v');
    // The deadline: a seek that never lands or never plays on fails instead of hanging.
    setTimeout(() => done(`no seek to ${t} and a second of play in 5 s: at ${v.currentTime}`),
               5000);
    v.addEventListener('seeked', () => {
        const landed = [v.currentTime, v.readyState];
        // Plays on from the target: a second of media (a quarter second at the rate).
        const onTime = () => {
            if (v.currentTime >= t + 1) {
                v.removeEventListener('timeupdate', onTime);
                v.pause();
                done([...landed, v.currentTime]);
            }
        };
        v.addEventListener('timeupdate', onTime);
        v.play().catch(e => done(String(e)));
    }, {once: true});
    v.currentTime = t;
})"""


@contextmanager
def _chromium_page() -> Iterator[Any]:
    """A page of Debian's Chromium (skips where Chromium or Playwright is missing)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            yield browser.new_page()
        finally:
            browser.close()


def _play_to_end_then_seek_each_chunk(page: Any) -> tuple[dict[str, Any], list[Any]]:
    """Wait (with a deadline) for the started playback to end, then seek into each chunk and
    play on; returns what the page recorded and each seek's (landed at, readyState, played to)."""
    page.wait_for_function("document.getElementById('v').ended", timeout=20000)
    played: dict[str, Any] = page.evaluate("window.seen")
    played["end"], played["buffered"] = page.evaluate("""() => {
        const b = document.getElementById('v').buffered;
        return [document.getElementById('v').currentTime,
                Array.from({length: b.length}, (_, i) => [b.start(i), b.end(i)])]; }""")
    seeks = [page.evaluate(_SEEK_AND_PLAY_ON_JS, t) for t in SEEKS]
    played["errors_after_seeks"] = page.evaluate("window.seen.errors")
    return played, seeks


def _assert_played_across_every_join(played: dict[str, Any], seeks: list[Any]) -> None:
    assert played["errors_after_seeks"] == [], played
    times = played["times"]
    # No waiting/stalled once playing (the one at the very start is the first load).
    assert [s for s in played["stalls"] if s[1] >= 0.5] == [], played["stalls"]
    assert times == sorted(times) and played["end"] == pytest.approx(12.0, abs=0.1)
    # Continuously: no step of currentTime jumps over media (at 4x a timeupdate comes every
    # ~1 s of media; skipping a 2 s fragment would be a longer step), and what was buffered is
    # one range from start to end: a hole at a join (in the video or the audio, the range is
    # their intersection) would split it.
    steps = [b - a for a, b in itertools.pairwise([0.0, *times])]
    assert max(steps) < 2.0, steps
    [(start, end)] = played["buffered"]
    assert start < 0.05 and end > 11.95, played["buffered"]
    for join in JOINS:  # playback passed each join
        assert any(t < join for t in times) and any(t > join for t in times)
    for seek, target in zip(seeks, SEEKS, strict=True):
        assert not isinstance(seek, str), seek  # the deadline passed or play() was refused
        landed, ready, played_to = seek
        assert landed == pytest.approx(target, abs=0.05) and ready >= 2
        assert played_to >= target + 1


@pytest.mark.browser
def test_assembled_rung_plays_across_every_join_in_chromium(encoded: Encoded) -> None:
    """Progressive playback of the joined file: time runs on through each join without a
    `waiting` stall, and a seek into each chunk lands, shows a picture and plays on."""
    page_file = encoded.chunked["180p"].parent / "play.html"
    page_file.write_text('<video id="v" src="video.mp4" muted preload="auto"></video>')
    with _chromium_page() as page:
        page.goto(page_file.as_uri())
        page.evaluate(_RECORD_JS)
        page.evaluate("""(rate) => { const v = document.getElementById('v');
            v.playbackRate = rate;
            v.play().catch(e => window.seen.errors.push(String(e))); }""", RATE)
        played, seeks = _play_to_end_then_seek_each_chunk(page)
    _assert_played_across_every_join(played, seeks)


@pytest.mark.browser
def test_assembled_rung_plays_through_hls_across_every_join_in_chromium(
    encoded: Encoded,
) -> None:
    """hls.js plays the joined rung from its byte-range `index.m3u8` over HTTP (ranges served by
    Starlette's StaticFiles): time runs on through each join with no stall and no hls.js error
    (buffer holes and stalls are hls.js errors too), and a seek into each chunk lands and plays
    on. A 2 s forward buffer: fragments are fetched as playback reaches them, so each join is
    crossed on a fragment appended just before. The back buffer is hls.js's default (kept, as
    the frontend's `new Hls()`): evicting it and seeking back makes hls.js skip the 2-3 AAC
    frames that straddle a fragment boundary, the unchunked file's behaviour too."""
    # Imported here: of the transcoder's tests only this one needs a web server.
    from starlette.applications import Starlette
    from starlette.routing import Mount
    from starlette.staticfiles import StaticFiles

    from tests.fixtures.servers import serve

    rung = encoded.chunked["180p"].parent
    (rung / "hls.html").write_text("<!doctype html><video id='v' muted playsinline></video>")
    app = Starlette(routes=[Mount("/", StaticFiles(directory=rung))])
    with serve(app) as base, _chromium_page() as page:
        page.goto(f"{base}/hls.html")
        page.add_script_tag(path=str(HLS_JS))
        page.evaluate(_RECORD_JS)
        page.evaluate("""(rate) => {
            const v = document.getElementById('v');
            window.seen.fragments = [];
            const hls = new Hls({maxBufferLength: 2, maxMaxBufferLength: 4});
            hls.on(Hls.Events.FRAG_BUFFERED, (_e, d) => window.seen.fragments.push(d.frag.sn));
            hls.on(Hls.Events.ERROR, (_e, d) => window.seen.errors.push(
                'hls:' + d.type + ':' + d.details + (d.fatal ? ':fatal' : '')));
            hls.on(Hls.Events.MANIFEST_PARSED, () => {
                v.playbackRate = rate;
                v.play().catch(e => window.seen.errors.push(String(e)));
            });
            hls.loadSource('index.m3u8');
            hls.attachMedia(v);
        }""", RATE)
        played, seeks = _play_to_end_then_seek_each_chunk(page)
    _assert_played_across_every_join(played, seeks)
    # Each 2 s fragment was appended once, in order, as playback reached it.
    assert played["fragments"] == list(range(6)), played


def test_chunk_and_assembly_through_s3(
    encoded: Encoded, minio_server: Any, s3_bucket: str, tx: Any, tmp_path: Path
) -> None:
    """Intermediates are objects under the video's prefix: an index publishes its chunk there,
    assembly reads every chunk and the audio back (the others uploaded from the local run)."""
    env = minio_server.env(s3_bucket)
    client = minio_server.client()
    client.upload_file(str(encoded.source), s3_bucket, "videos/7/source/clip.mp4")
    local = encoded.chunked["120p"].parent.parent
    for key in ("chunks/120p/00000.mp4", "chunks/120p/00002.mp4", "chunks/audio/64k.mp4"):
        client.upload_file(str(local / key), s3_bucket, f"videos/7/{key}")
    dest = ["--dest", f"s3://{s3_bucket}/videos/7"]
    run = tx.transcoder("chunk", "--source", f"s3://{s3_bucket}/videos/7/source/clip.mp4",
                        *dest, "--starts", STARTS, "--rung", "120p:214x120",
                        env={**env, "JOB_COMPLETION_INDEX": "1"})
    assert run.code == 0, run.stderr
    assert run.result["chunk"]["rungs"][0]["file"] == "videos/7/chunks/120p/00001.mp4"
    run = tx.transcoder("assemble", *dest, "--name", "120p", "--starts", STARTS,
                        "--audio-bitrate", "64", "--result-to",
                        f"s3://{s3_bucket}/videos/7/results/assemble-120p.json", env=env)
    assert run.code == 0, run.stderr
    assert (run.result["renditions"][0]["file"], run.result["renditions"][0]["playlist"]) == (
        "videos/7/120p/video.mp4", "videos/7/120p/index.m3u8"
    )
    assert "videos/7/results/assemble-120p.json" in set(minio_server.keys(s3_bucket))
    head = client.head_object(Bucket=s3_bucket, Key="videos/7/120p/video.mp4")
    assert head["ContentType"] == "video/mp4"
    joined = tmp_path / "video.mp4"
    client.download_file(s3_bucket, "videos/7/120p/video.mp4", str(joined))
    assert joined.read_bytes() == encoded.chunked["120p"].read_bytes()


def test_a_chunk_takes_its_rungs_video_rates(encoded: Encoded, tx: Any, tmp_path: Path) -> None:
    """The operator's chunks Job of one rung passes that rung's rates, as `rendition` gets them:
    x264 records its VBV settings in the stream, so they are read back from the chunk."""
    run = tx.transcoder("chunk", "--source", str(encoded.source), "--dest", str(tmp_path),
                        "--starts", STARTS, "--index", "2", "--rung", "120p:214x120",
                        "--maxrate", "300", "--bufsize", "700")
    assert run.code == 0, run.stderr
    data = (tmp_path / "chunks" / "120p" / "00002.mp4").read_bytes()
    assert b"vbv_maxrate=300" in data and b"vbv_bufsize=700" in data
    default = encoded.chunked["120p"].parent.parent / "chunks" / "120p" / "00002.mp4"
    assert b"vbv_maxrate=250" in default.read_bytes()  # the 120p default it replaced
