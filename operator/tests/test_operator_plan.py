"""The pure reconcile decisions: observed Jobs → actions, scheduling, status patches, events."""

from __future__ import annotations

from typing import Any

from videoflix_core.ladder import DEFAULT_LADDER, plan_ladder
from videoflix_core.status import spec_hash
from videoflix_core.transcode import (
    Phase,
    ProbeResult,
    RenditionStatus,
    StepPhase,
    StepStatus,
    ThumbnailStatus,
    VideoTranscodeSpec,
    VideoTranscodeStatus,
)
from videoflix_operator.builders import Owner, build_job
from videoflix_operator.config import OperatorSettings
from videoflix_operator.plan import (
    Observed,
    admit_on_create,
    deciding_pod_message,
    job_result,
    observe_job,
    owned_pods,
    plan,
    progress_pods,
    select_releases,
    status_patch,
    step_key,
    total_load,
    transition_events,
)

NOW = "2026-01-01T00:00:00Z"
SETTINGS = OperatorSettings(namespace="vf")
OWNER = Owner(name="video-42", namespace="vf", uid="u1")


def spec(**extra: Any) -> VideoTranscodeSpec:
    data: dict[str, Any] = {
        "videoId": 42,
        "source": {"bucket": "media", "key": "videos/42/source/a.mp4"},
    }
    data.update(extra)
    return VideoTranscodeSpec.model_validate(data)


def made(
    s: VideoTranscodeSpec,
    step: str,
    *,
    status: dict[str, Any] | None = None,
    suspend: bool = False,
    created: str = NOW,
    rungs: list[Any] | None = None,
) -> dict[str, Any]:
    """A Job as the API server would return it after the operator created it."""
    job = build_job(
        owner=OWNER, spec=s, spec_hash=spec_hash(s), step=step, rungs=rungs or [], settings=SETTINGS
    )
    job["metadata"]["creationTimestamp"] = created
    job["spec"]["suspend"] = suspend
    job["status"] = status or {}
    return job


COMPLETE = {
    "succeeded": 1,
    "startTime": NOW,
    "completionTime": NOW,
    "conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": NOW}],
}
FAILED = {
    "failed": 1,
    "startTime": NOW,
    "conditions": [
        {
            "type": "Failed",
            "status": "True",
            "reason": "PodFailurePolicy",
            "message": "Container transcoder for pod x failed with exit code 2",
            "lastTransitionTime": NOW,
        }
    ],
}
PROBE_RESULT = {"durationSeconds": 2.0, "width": 854, "height": 480, "rotation": 0}
PLANNED = plan_ladder(ProbeResult.model_validate(PROBE_RESULT), DEFAULT_LADDER)


def created_steps(actions: Any) -> set[str]:
    return {j["metadata"]["name"].rsplit("-", 1)[-1] for j in actions.create}


def test_fresh_cr_creates_only_the_probe() -> None:
    a = plan(
        spec(), OWNER, Observed(jobs=[], results={}, previous=None, generation=1), SETTINGS, NOW
    )
    assert created_steps(a) == {"probe"}
    assert a.status.phase == Phase.PENDING
    assert a.delete_jobs == [] and a.delete_prefixes == []
    assert a.events == []  # no Event per created Job: only phase changes are posted


def test_running_probe_creates_nothing() -> None:
    s = spec()
    jobs = [made(s, "probe", status={"active": 1, "startTime": NOW})]
    a = plan(s, OWNER, Observed(jobs=jobs, results={}, previous=None), SETTINGS, NOW)
    assert a.create == []
    assert a.status.phase == Phase.PROBING


def test_480p_probe_result_creates_two_renditions_and_a_thumbnail() -> None:
    s = spec()
    probe = made(s, "probe", status=COMPLETE)
    a = plan(
        s,
        OWNER,
        Observed(jobs=[probe], results={probe["metadata"]["name"]: PROBE_RESULT}, previous=None),
        SETTINGS,
        NOW,
    )
    assert created_steps(a) == {"120p", "360p", "thumb"}
    assert a.status.ready == "0/2"
    # The same observation again (a restart) asks for the same names: creates are idempotent (409).
    again = plan(
        s,
        OWNER,
        Observed(
            jobs=[probe], results={probe["metadata"]["name"]: PROBE_RESULT}, previous=a.status
        ),
        SETTINGS,
        NOW,
    )
    assert [j["metadata"]["name"] for j in again.create] == [
        j["metadata"]["name"] for j in a.create
    ]


def test_single_pass_creates_one_ladder_job() -> None:
    s = spec(strategy="SinglePass", thumbnail=False)
    probe = made(s, "probe", status=COMPLETE)
    a = plan(
        s,
        OWNER,
        Observed(jobs=[probe], results={probe["metadata"]["name"]: PROBE_RESULT}, previous=None),
        SETTINGS,
        NOW,
    )
    assert created_steps(a) == {"ladder"}
    args = a.create[0]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[0] == "ladder" and args.count("--rung") == 2
    # The sizes planned from the probe (854x480), passed as they are.
    assert [args[i + 1] for i, a in enumerate(args) if a == "--rung"] == [
        "120p:214x120",
        "360p:640x360",
    ]


def test_broken_source_fails_without_creating_more_jobs() -> None:
    s = spec()
    probe = made(s, "probe", status=FAILED)
    a = plan(
        s,
        OWNER,
        Observed(
            jobs=[probe],
            results={probe["metadata"]["name"]: {"error": "not a video"}},
            previous=None,
        ),
        SETTINGS,
        NOW,
    )
    assert a.create == []
    assert a.status.phase == Phase.FAILED
    assert a.status.message == "probe: not a video"
    assert [e.reason for e in a.events] == ["TranscodeFailed"]


def test_spec_change_supersedes_old_jobs_and_outputs() -> None:
    old = spec()
    old_jobs = [made(old, "probe", status=COMPLETE)]
    previous = plan(
        old,
        OWNER,
        Observed(
            jobs=old_jobs, results={old_jobs[0]["metadata"]["name"]: PROBE_RESULT}, previous=None
        ),
        SETTINGS,
        NOW,
    ).status
    new = spec(transcodeGeneration=1, source={"bucket": "media", "key": "videos/42/source/b.mp4"})
    a = plan(new, OWNER, Observed(jobs=old_jobs, results={}, previous=previous), SETTINGS, NOW)
    assert a.delete_jobs == [old_jobs[0]["metadata"]["name"]]
    assert set(a.delete_prefixes) == {
        "videos/42/120p/",
        "videos/42/360p/",
        "videos/42/thumbnails/",
        "videos/42/results/",
        "videos/42/chunks/",
        "videos/42/source/",
    }
    assert a.keep_keys == {"videos/42/source/b.mp4"}
    assert created_steps(a) == {"probe"}
    assert a.create[0]["metadata"]["labels"]["videoflix.io/spec-hash"] == spec_hash(new)
    assert "Superseded" in [e.reason for e in a.events]


def test_priority_change_supersedes_nothing_but_requeues_unfinished_jobs() -> None:
    old = spec()
    jobs = [made(old, "probe", status={"active": 1})]
    a = plan(spec(priority=9), OWNER, Observed(jobs=jobs, results={}, previous=None), SETTINGS, NOW)
    assert a.delete_jobs == [] and a.create == []
    assert a.reprioritize == [jobs[0]["metadata"]["name"]]
    same = plan(old, OWNER, Observed(jobs=jobs, results={}, previous=None), SETTINGS, NOW)
    assert same.reprioritize == []


def test_observe_job_reads_counts_and_conditions() -> None:
    s = spec()
    obs = observe_job(made(s, "probe", status=FAILED), {"error": "bad"})
    assert obs.finished == "Failed" and obs.reason == "PodFailurePolicy" and obs.failed == 1
    queued = observe_job(made(s, "probe", suspend=True), None)
    assert queued.suspended and queued.finished is None
    assert step_key(made(s, "rendition/360p", rungs=[PLANNED[1]])) == "rendition/360p"
    assert step_key({"metadata": {"labels": {}}}) is None


def pod(phase: str, message: str | None, finished: str = NOW) -> dict[str, Any]:
    term = {"exitCode": 0 if phase == "Succeeded" else 1, "finishedAt": finished}
    if message is not None:
        term["message"] = message
    return {"status": {"phase": phase, "containerStatuses": [{"state": {"terminated": term}}]}}


def test_result_comes_from_the_deciding_pod() -> None:
    s = spec()
    pods = [
        pod("Failed", '{"error": "first"}', "2026-01-01T00:00:01Z"),
        pod("Failed", 'boom\n{"result": {"error": "second"}}', "2026-01-01T00:00:05Z"),
        pod("Succeeded", '{"width": 1}'),
    ]
    assert deciding_pod_message(pods, succeeded=False) == 'boom\n{"result": {"error": "second"}}'
    assert job_result(made(s, "probe", status=FAILED), pods) == {"error": "second"}
    assert job_result(made(s, "probe", status=COMPLETE), pods) == {"width": 1}
    assert job_result(made(s, "probe", status={"active": 1}), pods) is None


def test_each_job_reads_only_the_pods_it_created() -> None:
    # One pod listing serves every Job of a transcode; owner uids split it, so a Job re-created
    # under the same name never takes its predecessor's result.
    def owned_by(uid: str, message: str) -> dict[str, Any]:
        return {**pod("Succeeded", message), "metadata": {"ownerReferences": [{"uid": uid}]}}

    probe = made(spec(), "probe", status=COMPLETE)
    probe["metadata"]["uid"] = "job-new"
    listing = [
        owned_by("job-old", '{"width": 1}'),
        owned_by("job-new", '{"width": 2}'),
        pod("Running", None),
    ]
    assert [p["metadata"]["ownerReferences"][0]["uid"] for p in owned_pods(probe, listing)] == [
        "job-new"
    ]
    assert job_result(probe, owned_pods(probe, listing)) == {"width": 2}


def job_for_queue(
    name: str,
    *,
    suspend: bool,
    priority: int = 0,
    created: str = NOW,
    finished: bool = False,
    submitted: str = NOW,
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "vf",
            "creationTimestamp": created,
            "annotations": {
                "videoflix.io/priority": str(priority),
                "videoflix.io/submitted-at": submitted,
            },
        },
        "spec": {"suspend": suspend},
        "status": COMPLETE if finished else {},
    }


def test_scheduler_fills_free_slots_by_priority_then_age() -> None:
    jobs = [
        job_for_queue("running", suspend=False),
        job_for_queue("done", suspend=False, finished=True),
        job_for_queue("old-low", suspend=True, created="2026-01-01T00:00:01Z"),
        job_for_queue("new-high", suspend=True, priority=50, created="2026-01-01T00:00:09Z"),
        job_for_queue("new-low", suspend=True, created="2026-01-01T00:00:05Z"),
    ]
    chosen, running, queued = select_releases(jobs, cap=3)
    assert [n for _, n in chosen] == ["new-high", "old-low"]
    assert (running, queued) == (1, 3)
    assert select_releases(jobs, cap=1)[0] == []
    assert [n for _, n in select_releases(jobs, cap=10)[0]] == ["new-high", "old-low", "new-low"]


def test_scheduler_never_exceeds_the_cap() -> None:
    jobs = [job_for_queue(f"r{i}", suspend=False) for i in range(5)]
    jobs += [job_for_queue(f"q{i}", suspend=True) for i in range(5)]
    assert select_releases(jobs, cap=4) == ([], 5, 5)


def test_scheduler_counts_reserved_slots_as_running() -> None:
    jobs = [job_for_queue("r", suspend=False), job_for_queue("q1", suspend=True)]
    jobs.append(job_for_queue("q2", suspend=True, created="2026-01-01T00:00:09Z"))
    assert [n for _, n in select_releases(jobs, cap=3)[0]] == ["q1", "q2"]
    chosen, running, _ = select_releases(jobs, cap=3, reserved=1)
    assert ([n for _, n in chosen], running) == (["q1"], 2)


def test_new_jobs_start_released_while_the_cap_has_room_and_nothing_waits() -> None:
    new = [job_for_queue(n, suspend=True) for n in ("a", "b", "c")]
    running = [job_for_queue("r", suspend=False), job_for_queue("d", suspend=False, finished=True)]
    load = total_load(running)
    assert load == (1, 0)
    assert admit_on_create(new, load, cap=10) == ["a", "b", "c"]
    assert admit_on_create(new, load, cap=3) == ["a", "b"]
    assert admit_on_create(new, load, cap=3, reserved=2) == []  # in-flight creates count


def test_new_jobs_queue_behind_anything_already_waiting() -> None:
    """A free slot goes to the oldest queued Job (the scheduler's order), never to a newcomer."""
    new = [job_for_queue("new", suspend=True)]
    waiting = [job_for_queue("old", suspend=True, created="2026-01-01T00:00:01Z")]
    assert admit_on_create(new, total_load(waiting), cap=10) == []


def test_a_wide_new_job_is_admitted_only_when_its_pods_fit() -> None:
    wide = job_for_queue("chunks", suspend=True)
    wide["spec"].update({"completionMode": "Indexed", "completions": 6, "parallelism": 4})
    running = [job_for_queue(f"r{i}", suspend=False) for i in range(2)]
    assert admit_on_create([wide], total_load(running), cap=6) == ["chunks"]
    assert admit_on_create([wide], total_load(running), cap=5) == []
    assert admit_on_create([wide], (0, 0), cap=2) == ["chunks"]  # wider than the cap: runs alone


def test_status_patch_nulls_what_is_gone_and_skips_what_is_same() -> None:
    old = {
        "phase": "Transcoding",
        "renditions": {"720p": {"phase": "Running"}, "1080p": {"phase": "Running"}},
        "message": "x",
    }
    new = {"phase": "Transcoding", "renditions": {"720p": {"phase": "Succeeded"}}}
    assert status_patch(old, new) == {
        "message": None,
        "renditions": {"1080p": None, "720p": {"phase": "Succeeded"}},
    }
    assert status_patch(new, new) == {}
    assert status_patch(None, new) == new


def test_transition_events_only_on_change() -> None:
    before = VideoTranscodeStatus(phase=Phase.PROBING)
    after = VideoTranscodeStatus(phase=Phase.PROBING)
    assert transition_events(before, after) == []
    failed = VideoTranscodeStatus(phase=Phase.FAILED, message="probe: bad")
    [note] = transition_events(before, failed)
    assert (note.type, note.reason, note.message) == ("Warning", "TranscodeFailed", "probe: bad")
    assert transition_events(failed, failed) == []


def test_every_phase_change_failure_and_retry_is_one_event() -> None:
    def reasons(before: VideoTranscodeStatus | None, after: VideoTranscodeStatus) -> list[str]:
        return [n.reason for n in transition_events(before, after)]

    probing = VideoTranscodeStatus(phase=Phase.PROBING, probe=StepStatus(attempts=1))
    assert reasons(VideoTranscodeStatus(), probing) == ["Probing"]
    running = {"360p": RenditionStatus(phase=StepPhase.RUNNING, attempts=1)}
    transcoding = VideoTranscodeStatus(phase=Phase.TRANSCODING, renditions=running)
    retried = transcoding.model_copy(
        update={"renditions": {"360p": RenditionStatus(phase=StepPhase.RUNNING, attempts=2)}}
    )
    [note] = transition_events(transcoding, retried)
    assert (note.type, note.reason) == ("Warning", "StepRetried")
    assert note.message == "Step 360p failed transiently; attempt 2 started"
    assert reasons(retried, retried) == []  # said once, not on every pass
    ready = retried.model_copy(
        update={"renditions": {"360p": RenditionStatus(phase=StepPhase.SUCCEEDED, attempts=2)}}
    )
    assert reasons(retried, ready) == []  # a ready rendition is no phase change: no Event
    thumb_failed = retried.model_copy(
        update={"thumbnail": ThumbnailStatus(phase=StepPhase.FAILED, attempts=1, message="exit 2")}
    )
    [note] = transition_events(retried, thumb_failed)
    assert (note.reason, note.message) == ("ThumbnailFailed", "Thumbnail failed: exit 2")
    assert reasons(thumb_failed, thumb_failed) == []


def test_scheduler_finishes_older_videos_first() -> None:
    # The old video's rendition Job was created after the new video's probe: it still goes first.
    jobs = [
        job_for_queue(
            "new-probe",
            suspend=True,
            created="2026-01-01T00:00:05Z",
            submitted="2026-01-01T00:00:04Z",
        ),
        job_for_queue(
            "old-720p",
            suspend=True,
            created="2026-01-01T00:00:09Z",
            submitted="2026-01-01T00:00:01Z",
        ),
    ]
    assert [n for _, n in select_releases(jobs, cap=1)[0]] == ["old-720p"]


def test_jobs_carry_their_videos_submission_time() -> None:
    owner = Owner(name="video-42", namespace="vf", uid="u1", created="2026-01-01T00:00:07Z")
    job = build_job(
        owner=owner, spec=spec(), spec_hash="h", step="probe", rungs=[], settings=SETTINGS
    )
    assert job["metadata"]["annotations"]["videoflix.io/submitted-at"] == "2026-01-01T00:00:07Z"


def test_progress_pods_are_the_running_pods_of_the_current_spec() -> None:
    s = spec()
    current = spec_hash(s)
    job_labels = build_job(
        owner=OWNER,
        spec=s,
        spec_hash=current,
        step="rendition/360p",
        rungs=[r for r in PLANNED if r.name == "360p"],
        settings=SETTINGS,
    )["spec"]["template"]["metadata"]["labels"]

    def pod(name: str, phase: str, **labels: str) -> dict[str, Any]:
        return {
            "metadata": {"name": name, "labels": {**job_labels, **labels}},
            "status": {"phase": phase},
        }

    pods = [
        pod("a", "Running"),
        pod("b", "Pending"),  # not started: no log yet
        pod("c", "Succeeded"),  # over: Job events carry its end
        pod("d", "Running", **{"videoflix.io/spec-hash": "00000000"}),  # superseded spec
        {"metadata": {"name": "e", "labels": {}}, "status": {"phase": "Running"}},  # not ours
        {"metadata": {"name": "f"}},
    ]
    assert progress_pods(pods, current) == [("a", "rendition/360p")]
    assert progress_pods(pods, None) == [("a", "rendition/360p"), ("d", "rendition/360p")]


def test_a_step_whose_job_is_gone_is_taken_from_its_stored_result() -> None:
    """The operator was down longer than the Job TTL: the probe's Job and pods are gone, but its
    stored result plans the renditions instead of a second probe."""
    s = spec()
    previous = plan(s, OWNER, Observed(jobs=[], results={}, previous=None), SETTINGS, NOW).status
    assert previous.probe is not None and previous.probe.phase == StepPhase.PENDING
    actions = plan(
        s,
        OWNER,
        Observed(jobs=[], results={}, previous=previous, recovered={"probe": PROBE_RESULT}),
        SETTINGS,
        NOW,
    )
    assert actions.status.probe is not None and actions.status.probe.phase == StepPhase.SUCCEEDED
    assert actions.status.source is not None and actions.status.source.height == 480
    assert created_steps(actions) == {"120p", "360p", "thumb"}


def test_a_recovered_result_never_overrides_an_existing_job() -> None:
    s = spec()
    running = made(s, "probe", status={"active": 1, "startTime": NOW})
    actions = plan(
        s,
        OWNER,
        Observed(jobs=[running], results={}, previous=None, recovered={"probe": PROBE_RESULT}),
        SETTINGS,
        NOW,
    )
    assert actions.status.phase == Phase.PROBING and not actions.create


def test_a_finished_job_with_a_lost_result_is_rerun_not_failed() -> None:
    s = spec()
    done = made(s, "probe", status=COMPLETE)
    name = done["metadata"]["name"]
    lost = plan(s, OWNER, Observed(jobs=[done], results={name: None}, previous=None), SETTINGS, NOW)
    assert lost.status.phase == Phase.FAILED  # what `rerun` is there to prevent
    actions = plan(
        s,
        OWNER,
        Observed(jobs=[done], results={}, previous=None, rerun=frozenset({name})),
        SETTINGS,
        NOW,
    )
    assert actions.delete_jobs == [name]
    assert actions.status.phase == Phase.PENDING and actions.status.message is None
    assert [j["metadata"]["name"] for j in actions.create] == [name]
