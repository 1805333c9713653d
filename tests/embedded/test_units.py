"""The embedded mode's pure decisions and the subprocess runner, without a server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from videoflix_api.embedded.app import EmbeddedConfig, build
from videoflix_api.embedded.dispatcher import (
    IndexedRun,
    chunked_step_args,
    indexed_observation,
    refined_progress,
    spec_for,
    step_args,
)
from videoflix_api.embedded.media import InvalidKey, UrlSigner, key_path, valid_range_header
from videoflix_api.embedded.runner import failure_message, parse_line, run_step
from videoflix_api.embedded.storage import LocalStorage
from videoflix_core.chunks import DEFAULT_CHUNK_SECONDS, plan_chunks
from videoflix_core.db import Video
from videoflix_core.ladder import DEFAULT_LADDER, plan_ladder
from videoflix_core.status import (
    AUDIO,
    PROBE,
    THUMBNAIL,
    assemble_step,
    chunk_step,
    rendition_step,
)
from videoflix_core.transcode import (
    Phase,
    ProbeResult,
    RenditionStatus,
    StepPhase,
    ThumbnailStatus,
    VideoTranscodeStatus,
)
from videoflix_operator.builders import transcoder_args


def test_step_args_use_storage_keys_as_paths() -> None:
    video = Video(id=7, source_key="videos/7/source/a.mp4", transcode_generation=3)
    spec = spec_for(video, "local")
    assert spec.transcode_generation == 3 and spec.source.key == "videos/7/source/a.mp4"
    assert step_args(PROBE, spec, None) == ("probe", ["--source", "videos/7/source/a.mp4"])
    assert step_args(THUMBNAIL, spec, None) == (
        "thumbnail",
        ["--source", "videos/7/source/a.mp4", "--dest", "videos/7/"],
    )
    # A portrait phone video: the planned 720p is 720x1280 and goes to the transcoder as such.
    planned = plan_ladder(ProbeResult(duration_seconds=3.0, width=720, height=1280), DEFAULT_LADDER)
    rung = next(r for r in planned if r.name == "720p")
    command, args = step_args(rendition_step("720p"), spec, rung)
    assert command == "rendition"
    assert args[:10] == [
        "--source",
        "videos/7/source/a.mp4",
        "--dest",
        "videos/7/",
        "--name",
        "720p",
        "--width",
        "720",
        "--height",
        "1280",
    ]
    # The very overrides the operator's Jobs get (kbit/s integers).
    assert args[10:] == ["--maxrate", "3000", "--bufsize", "6000", "--audio-bitrate", "128"]
    assert args[10:] == rung.cli_args()
    assert "1080p" not in [r.name for r in planned]  # no upscale of the 720-wide picture
    with pytest.raises(ValueError, match="no planned size"):
        step_args(rendition_step("720p"), spec, DEFAULT_LADDER[2])
    with pytest.raises(ValueError):
        step_args("ladder", spec, None)


def test_spec_for_refuses_a_video_without_source() -> None:
    with pytest.raises(ValueError, match="no source"):
        spec_for(Video(id=1, source_key=None, transcode_generation=0), "local")


def _status(progress: int, renditions: int, thumbnail: bool) -> VideoTranscodeStatus:
    return VideoTranscodeStatus(
        phase=Phase.TRANSCODING,
        progress=progress,
        renditions={
            f"{h}p": RenditionStatus(phase=StepPhase.RUNNING, height=h)
            for h in (120, 360, 720)[:renditions]
        },
        thumbnail=ThumbnailStatus() if thumbnail else None,
    )


def test_refined_progress_moves_with_running_steps() -> None:
    status = _status(progress=5, renditions=3, thumbnail=True)  # 4 steps of 95 %
    assert refined_progress(status, {}) == 5
    assert refined_progress(status, {"rendition/120p": 50.0}) == 5 + 11
    assert refined_progress(status, {"a": 100.0, "b": 100.0, "c": 100.0, "d": 100.0}) == 99
    # Never below what aggregate says, garbage percentages are clamped.
    assert refined_progress(status, {"a": -20.0}) == 5
    done = status.model_copy(update={"phase": Phase.SUCCEEDED, "progress": 100})
    assert refined_progress(done, {"a": 10.0}) == 100
    probing = VideoTranscodeStatus(phase=Phase.PROBING, progress=0)
    assert refined_progress(probing, {"probe": 50.0}) == 0


def test_parse_line() -> None:
    assert parse_line('{"progress":{"percent":12.5,"speed":2.0}}') == (
        "progress",
        {"percent": 12.5, "speed": 2.0},
    )
    assert parse_line('{"result":{"poster":"p"}}\n') == ("result", {"poster": "p"})
    assert parse_line("ffmpeg version 5.1") is None
    assert parse_line("{not json") is None
    assert parse_line('{"other": {}}') is None
    assert parse_line('{"result": 3}') is None


def test_failure_message_prefers_the_transcoders_reason() -> None:
    assert failure_message(2, {"error": "not a video"}, ["noise"]) == "not a video"
    assert failure_message(-9, None, []) == "transcoder killed by signal 9"
    assert failure_message(1, None, ["", "Traceback", "OSError: disk full", ""]) == (
        "transcoder exited with code 1: OSError: disk full"
    )


@pytest.mark.parametrize(
    "key", ["../x", "a/../../x", "/etc/passwd", "a//b", "a/./b", "a\\b", "", "x\x00y"]
)
def test_keys_cannot_leave_the_root(tmp_path: Path, key: str) -> None:
    with pytest.raises(InvalidKey):
        key_path(tmp_path, key)


def test_key_path_and_prefixes(tmp_path: Path) -> None:
    assert key_path(tmp_path, "videos/1/720p/video.mp4") == tmp_path / "videos/1/720p/video.mp4"
    assert key_path(tmp_path, "videos/1/") == tmp_path / "videos" / "1"


def test_signed_urls() -> None:
    signer = UrlSigner(b"s" * 32, "http://127.0.0.1:8000/")
    url = signer.url("videos/1/a b.mp4", expires_in=60, now=1000)
    assert url.startswith("http://127.0.0.1:8000/media/videos/1/a%20b.mp4?expires=1060&signature=")
    signature = url.rsplit("=", 1)[1]
    assert signer.verify("videos/1/a b.mp4", 1060, signature, now=1000)
    assert not signer.verify("videos/1/a b.mp4", 1060, signature, now=1061)  # expired
    assert not signer.verify("videos/2/a b.mp4", 1060, signature, now=1000)  # other key
    assert not UrlSigner(b"t" * 32, "http://x").verify("videos/1/a b.mp4", 1060, signature, now=1)
    with pytest.raises(ValueError):
        UrlSigner(b"short", "http://x")


@pytest.mark.parametrize(
    ("header", "valid"),
    [
        ("bytes=0-99", True),
        ("bytes=100-", True),
        ("bytes=-5", True),
        ("bytes=0-1, 5-9", True),
        ("BYTES=0-0", True),
        ("bytes=5-1", False),
        ("items=0-1", False),
        ("bytes=", False),
        ("bytes=a-b", False),
        ("bytes 0-1", False),
        ("bytes=0-1,", False),
        ("bytes=--1", False),
    ],
)
def test_valid_range_header(header: str, valid: bool) -> None:
    assert valid_range_header(header) is valid


def test_local_storage_upload_is_atomic_and_deletes_by_prefix(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "media", UrlSigner(b"k" * 32, "http://h"))
    sink = storage.open_upload("videos/3/source/a.mp4", "video/mp4")
    sink.write(b"abc")
    assert storage.size("videos/3/source/a.mp4") is None  # invisible until committed
    sink.write(b"def")
    assert sink.commit() == 6
    assert storage.read("videos/3/source/a.mp4", max_bytes=10) == b"abcdef"
    aborted = storage.open_upload("videos/3/source/b.mp4", "video/mp4")
    aborted.write(b"x")
    aborted.abort()
    assert sorted(p.name for p in storage.path("videos/3/source/").iterdir()) == ["a.mp4"]
    assert storage.key_of(str(storage.root / "videos/3/source/a.mp4")) == "videos/3/source/a.mp4"
    with pytest.raises(ValueError):
        storage.delete_prefix("videos/3")
    assert storage.delete_prefix("videos/3/") == 1
    assert not storage.path("videos/3/").exists()
    assert storage.read("videos/3/source/a.mp4", max_bytes=10) is None


def test_run_step_reports_result_progress_and_bad_input(tmp_path: Path, sample_video: Path) -> None:
    percents: list[float] = []

    async def both() -> tuple[object, object]:
        good = await run_step(
            "rendition",
            [
                "--source",
                str(sample_video),
                "--dest",
                f"{tmp_path}/out/",
                "--name",
                "120p",
                "--width",
                "214",
                "--height",
                "120",
            ],
            scratch_dir=tmp_path / "scratch1",
            on_progress=percents.append,
        )
        bad = await run_step(
            "probe", ["--source", str(tmp_path / "missing.mp4")], scratch_dir=tmp_path / "scratch2"
        )
        return good, bad

    good, bad = asyncio.run(both())
    assert good.succeeded and good.exit_code == 0  # type: ignore[attr-defined]
    rendition = good.result["renditions"][0]  # type: ignore[attr-defined]
    assert rendition["name"] == "120p" and Path(rendition["file"]).is_file()
    assert percents and percents[-1] == pytest.approx(100, abs=1)
    assert bad.permanent_failure and not bad.succeeded  # type: ignore[attr-defined]
    assert "not found" in (bad.message or "")  # type: ignore[attr-defined]


def test_chunked_steps_get_the_operators_arguments_with_storage_keys() -> None:
    spec = spec_for(Video(id=7, source_key="videos/7/source/a.mp4", transcode_generation=3), "bkt")
    [rung] = plan_ladder(ProbeResult(duration_seconds=60.0, width=320, height=180), DEFAULT_LADDER)
    chunks = plan_chunks(60.0, 10)
    for step in (chunk_step(rung.name), AUDIO, assemble_step(rung.name)):
        command, args = chunked_step_args(step, spec, [rung], chunks, with_audio=True)
        cluster = transcoder_args(step, spec, [rung], chunks, with_audio=True)
        # Only where things are differs: s3://bkt/<key> there, the key itself here.
        assert [command, *args] == [a.replace("s3://bkt/", "") for a in cluster]
    command, args = chunked_step_args(chunk_step(rung.name), spec, [rung], chunks, True)
    assert command == "chunk" and "--result-to" not in args  # its indexes' exit codes decide
    assert args[args.index("--starts") + 1] == "0,10,20,30,40,50"
    assert args[args.index("--work") + 1].startswith("chunks/3-")


def test_an_indexed_run_is_observed_like_an_indexed_job() -> None:
    run = IndexedRun(total=3)
    assert indexed_observation("chunks/120p", run).suspended  # no index has a slot yet
    run.started_at, run.active = "2026-12-02T00:00:00Z", 2
    run.done.add(0)
    run.failures = 1
    obs = indexed_observation("chunks/120p", run)
    assert (obs.suspended, obs.finished, obs.active, obs.succeeded, obs.failed) == (
        False, None, 2, 1, 1
    )  # fmt: skip
    assert obs.completed_indexes == "0" and obs.failed_indexes is None
    run.done.update({1, 2})
    assert indexed_observation("chunks/120p", run).finished == "Complete"
    run.failed.add(2)
    run.message = "failed 3 times: transcoder killed by signal 9"
    failed = indexed_observation("chunks/120p", run)
    assert (failed.finished, failed.failed_indexes, failed.message) == (
        "Failed", "2", "failed 3 times: transcoder killed by signal 9"
    )  # fmt: skip


def test_build_hands_the_chunk_length_to_the_dispatcher(tmp_path: Path) -> None:
    for config, seconds in [
        (EmbeddedConfig(data_dir=tmp_path / "ten", chunk_seconds=10), 10),
        (EmbeddedConfig(data_dir=tmp_path / "off", chunk_seconds=0), 0),
        (EmbeddedConfig(data_dir=tmp_path / "default"), DEFAULT_CHUNK_SECONDS),  # on, measured
    ]:
        embedded = build(config)
        try:
            assert embedded.dispatcher.chunk_seconds == seconds
        finally:
            embedded.engine.dispose()
