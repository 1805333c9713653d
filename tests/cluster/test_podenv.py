"""The local kubelet's pure pieces: env resolution, paths, image mapping, messages."""

from __future__ import annotations

import base64
import sys
from pathlib import Path

import pytest

from tests.cluster import podenv
from tests.cluster.controlplane import GO_HINT, BinariesUnavailable, binaries_dir
from tests.cluster.fixtures import crd_documents, missing_binaries_outcome, namespace_name
from tests.cluster.podenv import ContainerConfigError, ImageNotMapped, PathMap

POD = {
    "metadata": {
        "name": "job-abc",
        "namespace": "ns1",
        "uid": "u-1",
        "labels": {"app": "videoflix", "batch.kubernetes.io/job-name": "job"},
        "annotations": {"note": "hi"},
    },
    "spec": {
        "nodeName": "videoflix-local",
        "serviceAccountName": "default",
        "containers": [
            {
                "name": "main",
                "resources": {
                    "limits": {"cpu": "1500m", "memory": "1Gi"},
                    "requests": {"cpu": "250m"},
                },
            },
            {"name": "side"},
        ],
    },
}
ALLOCATABLE = {"cpu": "2", "memory": "8Gi"}


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


CONFIGMAPS = {"settings": {"data": {"LEVEL": "debug", "MODE": "fast"}}}
SECRETS = {"s3": {"data": {"KEY": b64("AKIA"), "SECRET": b64("s3cr3t")}}}


def resolve(container: dict[str, object]) -> dict[str, str]:
    return podenv.resolve_env(
        POD,
        {"name": "main", **container},
        configmap=CONFIGMAPS.get,
        secret=SECRETS.get,
        allocatable=ALLOCATABLE,
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("$(A)/x", "1/x"),
        ("$$(A)", "$(A)"),
        ("$(MISSING)", "$(MISSING)"),
        ("a$b", "a$b"),
        ("$(A", "$(A"),
        ("$(A)$(B)", "12"),
        ("end$", "end$"),
    ],
)
def test_expand_follows_kubernetes_rules(value: str, expected: str) -> None:
    assert podenv.expand(value, {"A": "1", "B": "2"}) == expected


def test_env_values_refs_and_envfrom_in_kubelet_order() -> None:
    env = resolve(
        {
            "envFrom": [
                {"configMapRef": {"name": "settings"}, "prefix": "CFG_"},
                {"secretRef": {"name": "s3"}},
            ],
            "env": [
                {"name": "PLAIN", "value": "v"},
                {
                    "name": "LEVEL",
                    "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "LEVEL"}},
                },
                {"name": "SECRET", "valueFrom": {"secretKeyRef": {"name": "s3", "key": "SECRET"}}},
                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "JOINED", "value": "$(POD).$(NS)/$(CFG_MODE)/$(LATER)"},
                {"name": "LATER", "value": "x"},
                {"name": "KEY", "value": "overridden"},
            ],
        }
    )
    assert env == {
        "CFG_LEVEL": "debug",
        "CFG_MODE": "fast",
        "KEY": "overridden",
        "SECRET": "s3cr3t",
        "PLAIN": "v",
        "LEVEL": "debug",
        "POD": "job-abc",
        "NS": "ns1",
        "APP": "videoflix",
        "IP": "127.0.0.1",
        # Only earlier variables expand, as in Kubernetes.
        "JOINED": "job-abc.ns1/fast/$(LATER)",
        "LATER": "x",
    }


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ({"resource": "limits.cpu"}, "2"),  # 1.5 cores round up
        ({"resource": "limits.cpu", "divisor": "1m"}, "1500"),
        ({"resource": "limits.cpu", "divisor": "0"}, "2"),  # the API server's default
        ({"resource": "requests.cpu", "divisor": "1m"}, "250"),
        ({"resource": "limits.memory", "divisor": "1Mi"}, "1024"),
        ({"resource": "requests.memory"}, "0"),
        # An unset limit is the node's allocatable amount.
        ({"resource": "limits.cpu", "containerName": "side"}, "2"),
    ],
)
def test_resource_field_refs(ref: dict[str, str], expected: str) -> None:
    env = resolve({"env": [{"name": "R", "valueFrom": {"resourceFieldRef": ref}}]})
    assert env == {"R": expected}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k"}}}],
            'secret "nope" not found',
        ),
        (
            [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s3", "key": "nope"}}}],
            "couldn't find key nope in secret s3",
        ),
        (
            [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "gone", "key": "k"}}}],
            'configmap "gone" not found',
        ),
        (
            [{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec.bogus"}}}],
            "unsupported fieldRef",
        ),
    ],
)
def test_missing_references_are_config_errors(env: list[object], message: str) -> None:
    with pytest.raises(ContainerConfigError, match=message):
        resolve({"env": env})


def test_optional_references_are_skipped() -> None:
    env = resolve(
        {
            "envFrom": [{"secretRef": {"name": "nope", "optional": True}}],
            "env": [
                {
                    "name": "A",
                    "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k", "optional": True}},
                },
                {
                    "name": "B",
                    "valueFrom": {
                        "configMapKeyRef": {"name": "settings", "key": "no", "optional": True}
                    },
                },
            ],
        }
    )
    assert env == {}


def test_paths_map_mounts_longest_first_and_flag_values() -> None:
    paths = PathMap.of(
        {
            "/scratch": "/tmp/p/v1",
            "/scratch/cache": "/tmp/p/v2",
            "/dev/termination-log": "/tmp/p/msg",
        }
    )
    assert paths.path("/scratch") == "/tmp/p/v1"
    assert paths.path("/scratch/work/a.mp4") == "/tmp/p/v1/work/a.mp4"
    assert paths.path("/scratch/cache/x") == "/tmp/p/v2/x"
    assert paths.path("/scratchpad") == "/scratchpad"
    assert paths.path("/dev/termination-log") == "/tmp/p/msg"
    assert paths.word("--out=/scratch/o") == "--out=/tmp/p/v1/o"
    assert paths.word("s3://bucket/scratch/x") == "s3://bucket/scratch/x"


def test_existing_host_paths_below_a_mount_are_kept_when_asked(tmp_path: Path) -> None:
    host_file = tmp_path / "kubeconfig"
    host_file.write_text("x")
    mount = str(tmp_path)  # the pod mounts an emptyDir over the file's dir
    kept = PathMap.of({mount: "/pod/v"}, keep_existing=True)
    assert kept.path(str(host_file)) == str(host_file)
    assert kept.path(f"{mount}/not-there") == "/pod/v/not-there"
    assert kept.path(mount) == "/pod/v"  # the mount point itself is always the mount
    strict = PathMap.of({mount: "/pod/v"})
    assert strict.path(str(host_file)) == "/pod/v/kubeconfig"


def test_transcoder_image_runs_this_interpreter_with_the_module() -> None:
    paths = PathMap.of({"/scratch": "/tmp/s"})
    argv = podenv.container_argv(
        {
            "image": "ghcr.io/acme/videoflix-transcoder:1.2.3",
            "args": ["probe", "--source", "$(SRC)", "--scratch=/scratch"],
        },
        podenv.DEFAULT_IMAGES,
        {"SRC": "s3://media/videos/1/source/a.mp4"},
        paths,
    )
    assert argv == [
        sys.executable,
        "-m",
        "videoflix_transcoder",
        "probe",
        "--source",
        "s3://media/videos/1/source/a.mp4",
        "--scratch=/tmp/s",
    ]
    for command in (
        ["python", "-m", "videoflix_transcoder"],
        ["videoflix-transcoder"],
        ["/usr/local/bin/python3.11", "-m", "videoflix_transcoder"],
    ):
        argv = podenv.container_argv(
            {"image": "videoflix-transcoder", "command": command, "args": ["probe"]},
            podenv.DEFAULT_IMAGES,
            {},
            paths,
        )
        assert argv == [sys.executable, "-m", "videoflix_transcoder", "probe"]


def test_test_shell_image_and_unknown_images() -> None:
    paths = PathMap.of({})
    assert podenv.container_argv(
        {"image": "videoflix-test-shell", "args": ["exit 3"]}, podenv.DEFAULT_IMAGES, {}, paths
    ) == ["/bin/sh", "-c", "exit 3"]
    with pytest.raises(ImageNotMapped, match=r"'busybox:1\.36'.*videoflix-transcoder"):
        podenv.container_argv({"image": "busybox:1.36"}, podenv.DEFAULT_IMAGES, {}, paths)
    # A registry host or tag that merely contains the name does not select a mapping.
    with pytest.raises(ImageNotMapped):
        podenv.container_argv(
            {"image": "videoflix-transcoder.evil.io/busybox"}, podenv.DEFAULT_IMAGES, {}, paths
        )


def test_termination_message_file_cap_and_log_fallback() -> None:
    big = b"x" * 5000
    assert len(podenv.termination_message(big, b"", policy="File", failed=False)) == 4096
    log = b"".join(f"line {i}\n".encode() for i in range(200))
    fallback = podenv.termination_message(b"", log, policy="FallbackToLogsOnError", failed=True)
    assert fallback.endswith("line 199\n")
    assert fallback.splitlines()[0] == "line 120"
    assert podenv.termination_message(b"", log, policy="File", failed=True) == ""
    assert podenv.termination_message(b"", log, policy="FallbackToLogsOnError", failed=False) == ""


def test_namespace_names_are_dns_labels_and_unique() -> None:
    first = namespace_name("test_job[exit-0 → Complete]_" + "x" * 80)
    assert first != namespace_name("test_job[exit-0 → Complete]_" + "x" * 80)
    assert len(first) <= 63
    assert all(c.isalnum() or c == "-" for c in first)
    assert first[0].isalnum() and first[-1].isalnum()
    assert first.islower()


@pytest.mark.parametrize(
    ("ci", "outcome"),
    [
        (None, "skip"),
        ("", "skip"),
        ("false", "skip"),
        ("true", "fail"),
        ("TRUE", "fail"),
        ("1", "fail"),
    ],
)
def test_missing_go_skips_locally_and_fails_in_ci(ci: str | None, outcome: str) -> None:
    assert missing_binaries_outcome(ci) == outcome


def test_without_cached_binaries_and_go_the_error_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VIDEOFLIX_CACHE", str(tmp_path))
    with pytest.raises(BinariesUnavailable) as raised:
        binaries_dir(go_available=False)
    assert str(raised.value) == GO_HINT
    assert "\n" not in GO_HINT and "go.dev" in GO_HINT


def test_crd_documents_take_only_crds(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n"
        "metadata: {name: a.example.io}\n---\napiVersion: v1\nkind: ConfigMap\n"
        "metadata: {name: c}\n---\n"
    )
    assert [d["metadata"]["name"] for d in crd_documents([tmp_path / "a.yaml"])] == ["a.example.io"]
