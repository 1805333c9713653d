"""The operator's chunked path, pure parts (issue 14): the Indexed Job, the chunk/audio/assemble
command lines, the plan's step order and the cap counting pods."""

from __future__ import annotations

from typing import Any

from videoflix_core.chunks import plan_chunks
from videoflix_core.ladder import Rung
from videoflix_core.status import AUDIO, CHUNKS, assemble_step, chunk_step, spec_hash
from videoflix_core.transcode import VideoTranscodeSpec
from videoflix_operator.builders import Owner, build_job, job_name
from videoflix_operator.config import OperatorSettings
from videoflix_operator.jobcache import slim_job
from videoflix_operator.plan import Observed, job_pods, plan, select_releases, step_key

NOW = "2026-01-01T00:00:00Z"
OWNER = Owner(name="video-42", namespace="vf", uid="u1")
SETTINGS = OperatorSettings(namespace="vf", chunk_seconds=10, chunk_parallelism=3)
RUNG = Rung("120p", 120, maxrate=250, bufsize=500, audio_bitrate=64, size=(214, 120))
CHUNKS_60S = plan_chunks(60, 10)


def spec(**extra: Any) -> VideoTranscodeSpec:
    data: dict[str, Any] = {
        "videoId": 42,
        "transcodeGeneration": 3,
        "source": {"bucket": "media", "key": "videos/42/source/a.mp4"},
        "renditions": [{"name": "120p"}],
        "thumbnail": False,
    }
    data.update(extra)
    return VideoTranscodeSpec.model_validate(data)


def build(step: str, rungs: list[Rung], **kw: Any) -> dict[str, Any]:
    s = spec()
    return build_job(
        owner=OWNER,
        spec=s,
        spec_hash=spec_hash(s),
        step=step,
        rungs=rungs,
        settings=kw.pop("settings", SETTINGS),
        chunks=CHUNKS_60S,
        **kw,
    )


def test_a_chunked_rung_is_one_indexed_job_with_a_per_index_budget() -> None:
    job = build(chunk_step("120p"), [RUNG])
    js = job["spec"]
    assert js["completionMode"] == "Indexed" and js["completions"] == 6
    assert js["parallelism"] == 3  # the setting, under the cap (4) and the chunk count
    assert js["backoffLimitPerIndex"] == SETTINGS.backoff_limit and js["maxFailedIndexes"] == 0
    assert js["podReplacementPolicy"] == "Failed" and "backoffLimit" not in js
    rules = js["podFailurePolicy"]["rules"]
    assert rules[0]["action"] == "FailIndex" and rules[0]["onExitCodes"]["values"] == [2]
    assert js["suspend"] is True
    work = f"chunks/3-{spec_hash(spec())}"
    args = js["template"]["spec"]["containers"][0]["args"]
    assert args == [
        "chunk", "--source", "s3://media/videos/42/source/a.mp4", "--dest", "s3://media/videos/42/",
        "--work", work, "--starts", "0,10,20,30,40,50", "--rung", "120p:214x120",
        "--maxrate", "250", "--bufsize", "500",  # its video rates, as unchunked (audio: own step)
    ]  # fmt: skip
    assert "--result-to" not in args and "--index" not in args  # JOB_COMPLETION_INDEX
    assert job["metadata"]["name"] == job_name("video-42", spec_hash(spec()), chunk_step("120p"))
    assert job["metadata"]["name"].endswith("-chunks-120p")
    assert step_key(job) == chunk_step("120p")
    narrow = build(
        chunk_step("120p"),
        [RUNG],
        settings=OperatorSettings(namespace="vf", chunk_parallelism=8, max_running_jobs=2),
    )
    assert narrow["spec"]["parallelism"] == 2  # never wider than the cap


def test_audio_and_assemble_are_single_pod_jobs_with_their_results_stored() -> None:
    other = Rung("360p", 360, audio_bitrate=None, size=(640, 360))
    audio = build(AUDIO, [RUNG, other])
    args = audio["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[0] == "audio" and args[args.index("--bitrate") :] == [
        "--bitrate", "64", "--bitrate", "96"]  # fmt: skip
    assert "--result-to" in args and "completionMode" not in audio["spec"]
    assert step_key(audio) == AUDIO
    join = build(assemble_step("120p"), [RUNG])
    args = join["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[0] == "assemble" and "--source" not in args
    assert args[-4:] == ["--starts", "0,10,20,30,40,50", "--audio-bitrate", "64"]
    assert step_key(join) == assemble_step("120p") and join["metadata"]["name"].endswith(
        "-join-120p"
    )
    silent = build(assemble_step("120p"), [RUNG], with_audio=False)
    assert "--audio-bitrate" not in silent["spec"]["template"]["spec"]["containers"][0]["args"]
    single = build(CHUNKS, [RUNG, other])
    assert step_key(single) == CHUNKS
    single_args = single["spec"]["template"]["spec"]["containers"][0]["args"]
    assert single_args.count("--rung") == 2 and "--maxrate" not in single_args  # as `ladder`


def test_plan_creates_the_chunks_and_audio_then_the_assembly() -> None:
    s = spec()
    probe = build_job(
        owner=OWNER, spec=s, spec_hash=spec_hash(s), step="probe", rungs=[], settings=SETTINGS
    )
    probe["status"] = {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}
    result = {
        "durationSeconds": 60.0,
        "width": 320,
        "height": 180,
        "fps": 10.0,
        "maxFps": 10.0,
        "videoCodec": "h264",
        "audioCodec": "aac",
    }
    name = probe["metadata"]["name"]
    a = plan(s, OWNER, Observed(jobs=[probe], results={name: result}, previous=None), SETTINGS, NOW)
    assert {step_key(j) for j in a.create} == {chunk_step("120p"), AUDIO}
    chunks = next(j for j in a.create if step_key(j) == chunk_step("120p"))
    chunks["status"] = {
        "succeeded": 6,
        "completedIndexes": "0-5",
        "conditions": [{"type": "Complete", "status": "True"}],
    }
    audio = next(j for j in a.create if step_key(j) == AUDIO)
    audio["status"] = {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}
    results = {name: result, audio["metadata"]["name"]: {"audio": [{"bitrate": 64}]}}
    b = plan(
        s,
        OWNER,
        Observed(jobs=[probe, chunks, audio], results=results, previous=a.status),
        SETTINGS,
        NOW,
    )
    assert [step_key(j) for j in b.create] == [assemble_step("120p")]
    assert b.status.renditions is not None and b.status.renditions["120p"].chunks is not None
    assert b.status.renditions["120p"].chunks.done == 6 and b.status.chunks == "6/6"
    assert not b.delete_prefixes  # the intermediates stay until the transcode ends


def test_the_cap_counts_an_indexed_jobs_pods() -> None:
    def job(name: str, suspend: bool, created: str, **spec: Any) -> dict[str, Any]:
        status = spec.pop("status", {})
        return {
            "metadata": {"name": name, "namespace": "vf", "creationTimestamp": created},
            "spec": {"suspend": suspend, **spec},
            "status": status,
        }

    indexed = {"completionMode": "Indexed", "completions": 6, "parallelism": 3}
    running = job("a", False, "1", **indexed)
    assert job_pods(running) == 3
    almost = job("a", False, "1", **indexed, status={"completedIndexes": "0-4"})
    assert job_pods(almost) == 1  # one index left: one pod
    assert job_pods(job("p", False, "1")) == 1
    # 3 pods run; a 3-wide queued Job does not fit a cap of 4, and nothing behind it jumps it.
    chosen, count, queued = select_releases(
        [running, job("b", True, "2", **indexed), job("c", True, "3")], cap=4
    )
    assert (chosen, count, queued) == ([], 3, 2)
    chosen, _, _ = select_releases([job("b", True, "2", **indexed), job("c", True, "3")], cap=4)
    assert chosen == [("vf", "b"), ("vf", "c")]


def test_the_job_cache_keeps_what_the_indexes_and_the_cap_read() -> None:
    job = build(chunk_step("120p"), [RUNG])
    job["metadata"].update(namespace="vf", resourceVersion="7")
    job["status"] = {"completedIndexes": "0-2", "failedIndexes": "4", "active": 2}
    slim = slim_job(job)
    assert slim["status"]["completedIndexes"] == "0-2" and slim["status"]["failedIndexes"] == "4"
    probe = build("probe", [])
    probe["metadata"].update(namespace="vf")
    probe["spec"].update(parallelism=1, completions=1, completionMode="NonIndexed")
    assert slim_job(probe)["spec"] == {"suspend": True}  # one-pod Jobs stay as small as before
    assert slim["spec"] == {
        "suspend": True,
        "completionMode": "Indexed",
        "completions": 6,
        "parallelism": 3,
    }
