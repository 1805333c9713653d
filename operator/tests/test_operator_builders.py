"""Job names and manifests, checked field by field."""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import ValidationError
from pydantic_settings import SettingsError
from videoflix_core import storage
from videoflix_core.ladder import DEFAULT_LADDER, Rung, plan_ladder
from videoflix_core.status import LADDER, PROBE, THUMBNAIL, rendition_step, spec_hash
from videoflix_core.transcode import ProbeResult, VideoTranscodeSpec
from videoflix_operator.builders import Owner, build_job, job_name, transcoder_args
from videoflix_operator.config import OperatorSettings

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
SPEC = VideoTranscodeSpec.model_validate(
    {"videoId": 42, "source": {"bucket": "media", "key": "videos/42/source/a.mp4"}, "priority": 7}
)
OWNER = Owner(name="video-42", namespace="vf", uid="uid-1")
SETTINGS = OperatorSettings(namespace="vf", transcoder_image="registry/videoflix-transcoder:1")
# Jobs are built from planned rungs (aggregate → plan_ladder), which carry their exact size.
PLANNED = plan_ladder(ProbeResult(duration_seconds=3.0, width=1920, height=1080), DEFAULT_LADDER)
PORTRAIT = plan_ladder(ProbeResult(duration_seconds=3.0, width=720, height=1280), DEFAULT_LADDER)


def job(step: str, rungs: list[Rung] | None = None) -> dict[str, Any]:
    return build_job(
        owner=OWNER,
        spec=SPEC,
        spec_hash="abcd1234",
        step=step,
        rungs=rungs or [],
        settings=SETTINGS,
    )


def test_names_are_deterministic_and_per_step() -> None:
    assert job_name("video-42", "abcd1234", PROBE) == "video-42-abcd1234-probe"
    assert job_name("video-42", "abcd1234", THUMBNAIL) == "video-42-abcd1234-thumb"
    assert job_name("video-42", "abcd1234", LADDER) == "video-42-abcd1234-ladder"
    assert job_name("video-42", "abcd1234", rendition_step("1080p")) == "video-42-abcd1234-1080p"
    assert job_name("video-42", "abcd1234", PROBE) == job_name("video-42", "abcd1234", PROBE)


@pytest.mark.parametrize("length", [40, 48, 49, 50, 63, 120, 253])
def test_names_stay_valid_dns_labels_at_and_over_63_chars(length: int) -> None:
    cr = ("video-" + "9" * 300)[:length]
    names = {
        job_name(cr, "abcd1234", step)
        for step in (PROBE, THUMBNAIL, LADDER, rendition_step("1080p"))
    }
    assert len(names) == 4
    for name in names:
        assert len(name) <= 63, name
        assert DNS_LABEL.match(name), name
    # Long names that differ only after the cut must still get different Jobs.
    other = cr[:-1] + "8"
    assert job_name(cr, "abcd1234", PROBE) != job_name(other, "abcd1234", PROBE)


def test_exactly_63_chars_is_kept_as_is() -> None:
    suffix = "-abcd1234-1080p"
    cr = "v" * (63 - len(suffix))
    assert job_name(cr, "abcd1234", rendition_step("1080p")) == cr + suffix
    assert len(cr + suffix) == 63
    longer = job_name(cr + "x", "abcd1234", rendition_step("1080p"))
    assert len(longer) == 63 and longer != cr + "x" + suffix


def test_transcoder_cli_follows_the_contract() -> None:
    src, dest = "s3://media/videos/42/source/a.mp4", "s3://media/videos/42/"

    def result(step: str) -> list[str]:
        # Each step also stores its result under the one key of videoflix_core.storage.
        key = storage.step_result_key(42, SPEC.transcode_generation, spec_hash(SPEC), step)
        return ["--result-to", f"s3://media/{key}"]

    assert transcoder_args(PROBE, SPEC, []) == ["probe", "--source", src, *result(PROBE)]
    assert transcoder_args(THUMBNAIL, SPEC, []) == [
        "thumbnail", "--source", src, "--dest", dest, *result(THUMBNAIL)
    ]
    assert result(rendition_step("720p"))[1].endswith("/results/0-" + spec_hash(SPEC)
                                                      + "/rendition-720p.json")
    rung = PLANNED[2]
    assert transcoder_args(rendition_step("720p"), SPEC, [rung]) == [
        "rendition",
        "--source",
        src,
        "--dest",
        dest,
        *result(rendition_step("720p")),
        "--name",
        "720p",
        "--width",
        "1280",
        "--height",
        "720",
        "--maxrate",
        "3000",
        "--bufsize",
        "6000",
        "--audio-bitrate",
        "128",
    ]
    assert transcoder_args(LADDER, SPEC, list(PLANNED[:2])) == [
        "ladder",
        "--source",
        src,
        "--dest",
        dest,
        *result(LADDER),
        "--rung",
        "120p:214x120",
        "--rung",
        "360p:640x360",
    ]


def test_portrait_jobs_get_the_planned_portrait_sizes() -> None:
    # The issue: 720x1280 got a 1080p Job the transcoder refused; now 720p is its top rung.
    assert [r.name for r in PORTRAIT] == ["120p", "360p", "720p"]
    args = transcoder_args(rendition_step("720p"), SPEC, [PORTRAIT[2]])
    assert args[args.index("--width") :][:4] == ["--width", "720", "--height", "1280"]
    ladder = transcoder_args(LADDER, SPEC, PORTRAIT)
    assert [ladder[i + 1] for i, a in enumerate(ladder) if a == "--rung"] == [
        "120p:120x214",
        "360p:360x640",
        "720p:720x1280",
    ]
    with pytest.raises(ValueError, match="no planned size"):
        transcoder_args(rendition_step("720p"), SPEC, [DEFAULT_LADDER[2]])


def test_job_is_owned_labelled_suspended_and_bounded() -> None:
    j = job(rendition_step("720p"), [PLANNED[2]])
    meta, spec = j["metadata"], j["spec"]
    assert meta["name"] == "video-42-abcd1234-720p"
    assert meta["namespace"] == "vf"
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "videoflix.io/v1alpha1",
            "kind": "VideoTranscode",
            "name": "video-42",
            "uid": "uid-1",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    labels = meta["labels"]
    assert labels["videoflix.io/transcode"] == "video-42"
    assert labels["videoflix.io/rendition"] == "720p"
    assert labels["videoflix.io/step"] == "rendition"
    assert labels["videoflix.io/spec-hash"] == "abcd1234"
    assert labels["app.kubernetes.io/managed-by"] == "videoflix-operator"
    assert labels["app.kubernetes.io/name"] == "videoflix-transcoder"
    assert spec["template"]["metadata"]["labels"] == labels
    assert meta["annotations"]["videoflix.io/priority"] == "7"
    assert spec["suspend"] is True
    assert spec["backoffLimit"] == SETTINGS.backoff_limit
    assert spec["activeDeadlineSeconds"] == SETTINGS.rendition_deadline_seconds
    assert spec["ttlSecondsAfterFinished"] == SETTINGS.job_ttl_seconds
    assert job(PROBE)["spec"]["activeDeadlineSeconds"] == SETTINGS.probe_deadline_seconds


def test_pod_failure_policy_fails_on_bad_input_and_ignores_disruptions() -> None:
    rules = job(PROBE)["spec"]["podFailurePolicy"]["rules"]
    assert rules[0] == {
        "action": "FailJob",
        "onExitCodes": {"containerName": "transcoder", "operator": "In", "values": [2]},
    }
    assert rules[1] == {
        "action": "Ignore",
        "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
    }
    assert job(PROBE)["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_pod_is_locked_down() -> None:
    pod = job(PROBE)["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == SETTINGS.job_service_account
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    [c] = pod["containers"]
    assert c["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert c["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert c["image"] == "registry/videoflix-transcoder:1"


def test_pod_env_scratch_cpu_limit_and_s3_secret() -> None:
    pod = job(rendition_step("1080p"), [PLANNED[3]])["spec"]["template"]["spec"]
    [c] = pod["containers"]
    env = {e["name"]: e for e in c["env"]}
    assert env["VIDEOFLIX_SCRATCH_DIR"]["value"] == "/scratch"
    assert env["VIDEOFLIX_CPU_LIMIT"]["valueFrom"]["resourceFieldRef"]["resource"] == "limits.cpu"
    assert c["envFrom"] == [{"secretRef": {"name": "videoflix-s3"}}]
    assert not any("SECRET" in e["name"] for e in c["env"])
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert mounts["scratch"] == "/scratch"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes["scratch"]
    assert c["resources"] == SETTINGS.resources["1080p"].manifest()
    assert c["resources"]["limits"]["cpu"] == "2"


def test_resources_per_rung_and_fallback_for_custom_rungs() -> None:
    small = job(rendition_step("120p"), [PLANNED[0]])
    custom = job(rendition_step("240p"), [Rung("240p", 240, size=(426, 240))])
    res = lambda j: j["spec"]["template"]["spec"]["containers"][0]["resources"]  # noqa: E731
    assert res(small) == SETTINGS.resources["120p"].manifest()
    assert res(custom) == SETTINGS.resources["1080p"].manifest()


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIDEOFLIX_NAMESPACE", "media")
    monkeypatch.setenv("VIDEOFLIX_MAX_RUNNING_JOBS", "3")
    monkeypatch.setenv("VIDEOFLIX_LADDER", '[{"name": "240p", "height": 240}]')
    monkeypatch.setenv(
        "VIDEOFLIX_RESOURCES", '{"probe": {"requests": {"cpu": "100m"}, "limits": {"cpu": "1"}}}'
    )
    s = OperatorSettings()
    assert s.namespace == "media"
    assert s.max_running_jobs == 3
    assert s.ladder_rungs() == (Rung("240p", 240),)
    assert s.resources_for("probe") == {"requests": {"cpu": "100m"}, "limits": {"cpu": "1"}}


SCHEDULING_ENV = {
    "VIDEOFLIX_JOB_IMAGE_PULL_SECRETS": '[{"name": "regcred"}]',
    "VIDEOFLIX_JOB_NODE_SELECTOR": '{"videoflix.io/pool": "transcode"}',
    "VIDEOFLIX_JOB_TOLERATIONS": (
        '[{"key": "dedicated", "operator": "Equal", "value": "transcode", "effect": "NoSchedule"},'
        ' {"key": "spot", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60}]'
    ),
    "VIDEOFLIX_JOB_AFFINITY": (
        '{"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms":'
        ' [{"matchExpressions": [{"key": "arch", "operator": "In", "values": ["amd64"]}]}]}}}'
    ),
    "VIDEOFLIX_JOB_PRIORITY_CLASS_NAME": "videoflix-batch",
}


def test_job_pods_carry_no_scheduling_fields_by_default() -> None:
    pod = job(PROBE)["spec"]["template"]["spec"]
    for key in ("imagePullSecrets", "nodeSelector", "tolerations", "affinity", "priorityClassName"):
        assert key not in pod


def test_job_pod_scheduling_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in SCHEDULING_ENV.items():
        monkeypatch.setenv(key, value)
    settings = OperatorSettings()
    for step, rungs in (
        (PROBE, []),
        (rendition_step("360p"), [PLANNED[1]]),
        (THUMBNAIL, []),
    ):
        pod = build_job(
            owner=OWNER, spec=SPEC, spec_hash="abcd1234", step=step, rungs=rungs, settings=settings
        )["spec"]["template"]["spec"]
        assert pod["imagePullSecrets"] == [{"name": "regcred"}]
        assert pod["nodeSelector"] == {"videoflix.io/pool": "transcode"}
        assert pod["tolerations"] == [
            {"key": "dedicated", "operator": "Equal", "value": "transcode", "effect": "NoSchedule"},
            {"key": "spot", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60},
        ]
        terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert terms["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] == ["amd64"]
        assert pod["priorityClassName"] == "videoflix-batch"
        # The locked-down fields stay as they are.
        assert pod["automountServiceAccountToken"] is False
    # Each Job gets its own copy: editing one manifest cannot leak into the settings.
    pod["affinity"]["nodeAffinity"].clear()
    assert settings.job_affinity["nodeAffinity"]


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        ("VIDEOFLIX_JOB_IMAGE_PULL_SECRETS", '["regcred"]', "valid dictionary"),
        ("VIDEOFLIX_JOB_IMAGE_PULL_SECRETS", '[{"name": "Reg_Cred"}]', "pattern"),
        ("VIDEOFLIX_JOB_NODE_SELECTOR", '{"pool": 1}', "valid string"),
        ("VIDEOFLIX_JOB_TOLERATIONS", '[{"key": "a", "efect": "NoSchedule"}]', "Extra inputs"),
        ("VIDEOFLIX_JOB_TOLERATIONS", '[{"key": "a", "effect": "NoRun"}]', "NoSchedule"),
        (
            "VIDEOFLIX_JOB_TOLERATIONS",
            '[{"key": "a", "operator": "Exists", "value": "b"}]',
            "no value",
        ),
        ("VIDEOFLIX_JOB_TOLERATIONS", '[{"effect": "NoSchedule"}]', "without a key"),
        ("VIDEOFLIX_JOB_TOLERATIONS", '[{"key": "a", "tolerationSeconds": 5}]', "NoExecute"),
        ("VIDEOFLIX_JOB_AFFINITY", '{"nodeAfinity": {}}', "unknown affinity keys"),
        ("VIDEOFLIX_JOB_PRIORITY_CLASS_NAME", "High Priority", "not a valid PriorityClass"),
        ("VIDEOFLIX_JOB_TOLERATIONS", "not json", 'parsing value for field "job_tolerations"'),
    ],
)
def test_bad_scheduling_settings_are_refused_at_start(
    monkeypatch: pytest.MonkeyPatch, key: str, value: str, reason: str
) -> None:
    monkeypatch.setenv(key, value)
    with pytest.raises((ValidationError, SettingsError), match=reason):
        OperatorSettings()
