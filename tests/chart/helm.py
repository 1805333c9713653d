"""Render the chart with the real Helm binary (built from its Go module by tools/gotool.sh)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "videoflix"
CI_VALUES = sorted((CHART / "ci").glob("*.yaml"))
# `helm template` without a cluster assumes Kubernetes 1.20; the chart needs 1.29+.
KUBE_VERSION = "1.34.0"
RELEASE = "rel"
NAMESPACE = "videoflix"

Obj = dict[str, Any]


class HelmUnavailable(Exception):
    pass


class HelmError(Exception):
    def __init__(self, args: list[str], stderr: str) -> None:
        self.stderr = stderr
        super().__init__(f"helm {' '.join(args)} failed:\n{stderr}")


@cache
def helm_binary() -> str:
    try:
        result = subprocess.run(
            [str(REPO / "tools" / "gotool.sh"), "helm"], capture_output=True, text=True, check=True
        )
    except subprocess.CalledProcessError as error:
        raise HelmUnavailable(error.stderr.strip().splitlines()[-1]) from error
    return result.stdout.strip()


def helm(*args: str) -> str:
    cmd = [helm_binary(), *args]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if result.returncode != 0:
        raise HelmError(list(args), result.stderr)
    return result.stdout


def _set_args(values: Mapping[str, Any] | None) -> list[str]:
    args: list[str] = []
    for key, value in (values or {}).items():
        if isinstance(value, str):
            args += ["--set-string", f"{key}={value}"]
        else:
            args += ["--set-json", f"{key}={json.dumps(value)}"]
    return args


def template_text(
    values_files: Iterable[Path] = (),
    values: Mapping[str, Any] | None = None,
    *,
    release: str = RELEASE,
    namespace: str = NAMESPACE,
) -> str:
    args = [
        "template",
        release,
        str(CHART),
        "--namespace",
        namespace,
        "--kube-version",
        KUBE_VERSION,
    ]
    for path in values_files:
        args += ["--values", str(path)]
    return helm(*args, *_set_args(values))


def render(
    values_files: Iterable[Path] = (),
    values: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> list[Obj]:
    """Every object the chart renders (hooks and test pods included)."""
    docs = yaml.safe_load_all(template_text(values_files, values, **kwargs))
    return [d for d in docs if d]


def find(objects: list[Obj], kind: str, name_suffix: str = "") -> Obj:
    matches = [
        o for o in objects if o["kind"] == kind and o["metadata"]["name"].endswith(name_suffix)
    ]
    assert len(matches) == 1, (
        f"expected one {kind} *{name_suffix}, got {[o['metadata']['name'] for o in matches]}"
    )
    return matches[0]


def find_all(objects: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objects if o["kind"] == kind]


WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "Job")


def has_pods(obj: Obj) -> bool:
    return obj["kind"] == "Pod" or obj["kind"] in WORKLOADS


def pod_spec(obj: Obj) -> Obj:
    """The pod spec of a workload (Deployment, Job, …) or a Pod."""
    spec: Obj = obj["spec"] if obj["kind"] == "Pod" else obj["spec"]["template"]["spec"]
    return spec


def container_env(container: Obj) -> dict[str, Obj]:
    return {e["name"]: e for e in container.get("env", [])}


def resolve_env(container: Obj, objects: list[Obj], namespace: str = NAMESPACE) -> dict[str, str]:
    """The container's env as the kubelet would set it, from the rendered Secrets/ConfigMaps.

    References to Secrets the chart does not render (existingSecret) raise KeyError.
    """
    data: dict[tuple[str, str], dict[str, str]] = {}
    for obj in objects:
        if obj["kind"] == "Secret":
            key = (obj["metadata"].get("namespace", namespace), obj["metadata"]["name"])
            data[key] = dict(obj.get("stringData") or {})
    env: dict[str, str] = {}
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
            continue
        ref = item["valueFrom"]["secretKeyRef"]
        env[item["name"]] = data[(namespace, ref["name"])][ref["key"]]
    return env
