"""The watch-fed Job cache: what reconciles and the scheduler read instead of LISTs."""

from __future__ import annotations

from typing import Any

from videoflix_core.status import spec_hash
from videoflix_core.transcode import VideoTranscodeSpec
from videoflix_operator.builders import Owner, build_job
from videoflix_operator.config import OperatorSettings
from videoflix_operator.jobcache import JobCache, is_newer, slim_job
from videoflix_operator.plan import (
    Observed,
    job_result,
    observe_job,
    owned_pods,
    plan,
    select_releases,
    total_load,
)

SETTINGS = OperatorSettings(namespace="vf")
NOW = "2026-01-01T00:00:00Z"


def spec(video_id: int = 42) -> VideoTranscodeSpec:
    return VideoTranscodeSpec.model_validate(
        {"videoId": video_id, "source": {"bucket": "media", "key": f"videos/{video_id}/s/a.mp4"}}
    )


def job(
    cr: str = "video-42",
    step: str = "probe",
    *,
    version: str = "10",
    suspend: bool = True,
    status: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A Job as the API server returns it: the built manifest plus server-set fields."""
    s = spec()
    manifest = build_job(
        owner=Owner(name=cr, namespace="vf", uid="u1"),
        spec=s,
        spec_hash=spec_hash(s),
        step=step,
        rungs=[],
        settings=SETTINGS,
    )
    manifest["metadata"].update(
        namespace="vf", resourceVersion=version, creationTimestamp=NOW, uid="j1"
    )
    manifest["metadata"]["managedFields"] = [{"manager": "kube-controller-manager"}]
    manifest["spec"]["suspend"] = suspend
    manifest["status"] = status or {}
    return manifest


COMPLETE = {
    "succeeded": 1,
    "startTime": NOW,
    "completionTime": NOW,
    "conditions": [
        {"type": "SuccessCriteriaMet", "status": "True"},
        {"type": "Complete", "status": "True", "lastTransitionTime": NOW},
    ],
}


def test_slim_job_keeps_what_the_decisions_read() -> None:
    full = job(suspend=False, status=COMPLETE)
    slim = slim_job(full)
    assert "managedFields" not in slim["metadata"] and "template" not in slim["spec"]
    assert slim["status"]["conditions"] == [
        {"type": "Complete", "status": "True", "lastTransitionTime": NOW}
    ]
    # Every pure decision reads the slim Job exactly as the full one.
    assert observe_job(slim, None) == observe_job(full, None)
    assert job_result(slim, []) == job_result(full, [])
    pods = [{"metadata": {"ownerReferences": [{"uid": uid}]}} for uid in ("j0", "j1")]
    assert owned_pods(slim, pods) == owned_pods(full, pods) == pods[1:]
    queued = [job("video-1", version="5"), job("video-2", version="6", suspend=False)]
    assert select_releases([slim_job(j) for j in queued], 4) == select_releases(queued, 4)
    observed = Observed(jobs=[full], results={}, previous=None, generation=1)
    observed_slim = Observed(jobs=[slim], results={}, previous=None, generation=1)
    owner = Owner(name="video-42", namespace="vf", uid="u1")
    a = plan(spec(), owner, observed, SETTINGS, NOW)
    b = plan(spec(), owner, observed_slim, SETTINGS, NOW)
    assert (a.status, a.create, a.delete_jobs) == (b.status, b.create, b.delete_jobs)


def test_a_late_event_never_replaces_a_newer_write() -> None:
    cache = JobCache()
    assert cache.put(job(version="20", suspend=False))  # the answer to the release patch
    assert not cache.put(job(version="19", suspend=True))  # the watch event from before it
    [cached] = cache.jobs_of("vf", "video-42")
    assert cached["spec"]["suspend"] is False
    assert cache.unfinished() == [cached]  # counted as running, so the cap holds
    assert cache.put(job(version="21", suspend=False, status=COMPLETE))
    assert cache.unfinished() == []  # finished: no longer the scheduler's business
    assert len(cache.jobs_of("vf", "video-42")) == 1
    assert is_newer("abc", "20") and is_newer("3", None)


def test_the_cap_load_is_kept_as_jobs_change() -> None:
    """The running pods and queued Jobs a create is admitted by, kept per put/remove instead
    of walked: always what `total_load` of the unfinished Jobs says."""
    cache = JobCache()
    chunks = job("video-2", suspend=False)  # stands for an Indexed rung: only its spec counts
    chunks["spec"].update({"completionMode": "Indexed", "completions": 6, "parallelism": 4})
    steps: list[tuple[str, dict[str, Any] | tuple[str, str], tuple[int, int]]] = [
        ("put", job("video-1", version="10"), (0, 1)),  # queued
        ("put", job("video-1", "thumbnail", version="11"), (0, 2)),
        ("put", job("video-1", version="12", suspend=False), (1, 1)),  # released
        ("put", job("video-1", version="11", suspend=True), (1, 1)),  # a late event: ignored
        ("put", {**chunks, "metadata": {**chunks["metadata"], "resourceVersion": "13"}}, (5, 1)),
        (
            "put",  # four of six chunks done: the two left run
            {
                **chunks,
                "metadata": {**chunks["metadata"], "resourceVersion": "14"},
                "status": {"completedIndexes": "0-3"},
            },
            (3, 1),
        ),
        ("put", job("video-1", version="15", suspend=False, status=COMPLETE), (2, 1)),
        ("remove", ("vf", job("video-1", "thumbnail")["metadata"]["name"]), (2, 0)),
        ("remove", ("vf", chunks["metadata"]["name"]), (0, 0)),
        ("remove", ("vf", "never-seen"), (0, 0)),
    ]
    for verb, arg, expected in steps:
        if verb == "put":
            assert isinstance(arg, dict)
            cache.put(arg)
        else:
            assert isinstance(arg, tuple)
            cache.remove(*arg)
        assert cache.load() == total_load(cache.unfinished()) == expected, (verb, expected)


def test_jobs_are_grouped_by_their_transcode_and_removed_on_delete() -> None:
    cache = JobCache()
    for cr, step in (("video-1", "probe"), ("video-1", "thumbnail"), ("video-2", "probe")):
        cache.put(job(cr, step))
    assert len(cache) == 3
    names = {job("video-1")["metadata"]["name"], job("video-1", "thumbnail")["metadata"]["name"]}
    assert {j["metadata"]["name"] for j in cache.jobs_of("vf", "video-1")} == names
    assert cache.jobs_of("other", "video-1") == []
    cache.remove("vf", job("video-1")["metadata"]["name"])
    cache.remove("vf", job("video-1", "thumbnail")["metadata"]["name"])
    cache.remove("vf", "never-seen")
    assert cache.jobs_of("vf", "video-1") == [] and len(cache) == 1
    unlabelled = job("video-3")
    del unlabelled["metadata"]["labels"]["videoflix.io/transcode"]
    assert not cache.put(unlabelled)  # not ours to track


def test_a_relist_drops_jobs_gone_before_it_but_not_newer_ones() -> None:
    cache = JobCache()
    cache.put(job("video-1", version="10"))  # deleted while the watch was down
    cache.put(job("video-2", version="12"))  # still there: in the list
    cache.put(job("video-3", version="40"))  # created after the list was served
    listed = {("vf", job("video-2")["metadata"]["name"])}
    assert cache.drop_missing("vf", listed, "30") == 1
    left = {j["metadata"]["labels"]["videoflix.io/transcode"] for j in cache.unfinished()}
    assert left == {"video-2", "video-3"}
    assert cache.drop_missing("elsewhere", set(), "99") == 0


def test_only_changes_a_reconcile_reads_ask_for_one() -> None:
    cache = JobCache()
    name = job()["metadata"]["name"]
    cache.put(job(version="10"))
    assert cache.take_changed("vf", name)  # new: the CR must look at it
    assert not cache.take_changed("vf", name)  # asked once per change
    noisy = job(version="11")
    noisy["status"] = {"ready": 0, "uncountedTerminatedPods": {}}  # not read by any decision
    cache.put(noisy)
    assert not cache.take_changed("vf", name)
    cache.put(job(version="12", suspend=False))  # released: the step now runs
    assert cache.take_changed("vf", name)
    cache.put(job(version="13", suspend=False, status=COMPLETE))
    cache.remove("vf", name)
    assert not cache.take_changed("vf", name)  # a removed Job leaves no flag behind
