"""Pure pieces of the local kubelet: how a pod's container becomes a local process.

Everything here works on plain dicts as the API server returns them, so it is unit-tested
without a cluster: environment resolution (value, valueFrom, envFrom, `$(VAR)` expansion),
mapping of in-container paths (emptyDir mounts, the termination-message file) to host paths,
and mapping of image names to local entrypoints.
"""

from __future__ import annotations

import base64
import math
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from kubernetes.utils import parse_quantity

Obj = dict[str, Any]
# Looks up a ConfigMap/Secret by name in the pod's namespace; None when it does not exist.
Lookup = Callable[[str], Obj | None]

DEFAULT_TERMINATION_MESSAGE_PATH = "/dev/termination-log"
# The kubelet's own cap on a termination message.
MAX_TERMINATION_MESSAGE_BYTES = 4096
# The kubelet's fallback for FallbackToLogsOnError: the last 80 lines, at most 2048 bytes.
FALLBACK_LOG_LINES = 80
FALLBACK_LOG_BYTES = 2048
POD_IP = "127.0.0.1"


class ContainerConfigError(Exception):
    """The container cannot start yet (the kubelet's CreateContainerConfigError)."""


class ImageNotMapped(Exception):
    """The image has no local entrypoint; the pod fails with this message."""


# --- $(VAR) expansion -------------------------------------------------------------------------


def expand(value: str, env: Mapping[str, str]) -> str:
    """Expand `$(VAR)` like Kubernetes: `$$` escapes, unknown references stay as written."""
    out: list[str] = []
    i = 0
    while i < len(value):
        ch = value[i]
        if ch == "$" and i + 1 < len(value):
            nxt = value[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                end = value.find(")", i + 2)
                if end != -1:
                    name = value[i + 2 : end]
                    out.append(env[name] if name in env else value[i : end + 1])
                    i = end + 1
                    continue
        out.append(ch)
        i += 1
    return "".join(out)


# --- env resolution ---------------------------------------------------------------------------


def secret_or_configmap_data(obj: Obj, *, secret: bool) -> dict[str, str]:
    data: dict[str, str] = {}
    if secret:
        for key, b64 in (obj.get("data") or {}).items():
            data[key] = base64.b64decode(b64).decode("utf-8", "replace")
        # stringData is write-only and never returned, but accept it for local objects.
        data.update(obj.get("stringData") or {})
    else:
        data.update(obj.get("data") or {})
        for key, b64 in (obj.get("binaryData") or {}).items():
            data[key] = base64.b64decode(b64).decode("utf-8", "replace")
    return data


_LABEL_REF = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


def field_ref(pod: Obj, path: str) -> str:
    """The downward-API fields the kubelet supports for env vars."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.hostIP": POD_IP,
        "status.hostIPs": POD_IP,
        "status.podIP": POD_IP,
        "status.podIPs": POD_IP,
    }
    if path in simple:
        return str(simple[path])
    match = _LABEL_REF.match(path)
    if match:
        return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))
    raise ContainerConfigError(f"unsupported fieldRef fieldPath {path!r}")


def _quantity(value: object) -> Decimal:
    parsed: Decimal = parse_quantity(value)  # type: ignore[no-untyped-call]
    return parsed


def resource_field_ref(pod: Obj, container: Obj, ref: Obj, allocatable: Mapping[str, str]) -> str:
    """limits.*/requests.* of a container, rounded up by the divisor, as the kubelet does.

    An unset limit falls back to the node's allocatable amount (the kubelet's rule); an unset
    request is 0.
    """
    name = ref.get("containerName") or container["name"]
    target = next(
        (c for c in (pod.get("spec") or {}).get("containers", []) if c.get("name") == name), None
    )
    if target is None:
        raise ContainerConfigError(f"resourceFieldRef names unknown container {name!r}")
    resource = str(ref.get("resource", ""))
    kind, _, resource_name = resource.partition(".")
    if kind not in ("limits", "requests") or not resource_name:
        raise ContainerConfigError(f"unsupported resourceFieldRef resource {resource!r}")
    amounts = (target.get("resources") or {}).get(kind) or {}
    raw = amounts.get(resource_name)
    if raw is None and kind == "limits":
        raw = allocatable.get(resource_name)
    quantity = _quantity(raw) if raw is not None else Decimal(0)
    divisor = _quantity(ref.get("divisor") or "1")
    if divisor == 0:  # the API server defaults an omitted divisor to "0", meaning 1
        divisor = Decimal(1)
    return str(math.ceil(quantity / divisor))


def _key_ref(kind: str, ref: Obj, lookup: Lookup, *, secret: bool) -> str | None:
    name = ref.get("name", "")
    key = ref.get("key", "")
    optional = bool(ref.get("optional", False))
    obj = lookup(name)
    if obj is None:
        if optional:
            return None
        raise ContainerConfigError(f'{kind} "{name}" not found')
    data = secret_or_configmap_data(obj, secret=secret)
    if key not in data:
        if optional:
            return None
        raise ContainerConfigError(f"couldn't find key {key} in {kind} {name}")
    return data[key]


def resolve_env(
    pod: Obj,
    container: Obj,
    *,
    configmap: Lookup,
    secret: Lookup,
    allocatable: Mapping[str, str],
) -> dict[str, str]:
    """The container's environment as the kubelet builds it: envFrom first, then env in order.

    Each env value may reference earlier variables with `$(NAME)`.
    """
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        if "configMapRef" in source:
            ref, kind, lookup, is_secret = source["configMapRef"], "configmap", configmap, False
        elif "secretRef" in source:
            ref, kind, lookup, is_secret = source["secretRef"], "secret", secret, True
        else:
            raise ContainerConfigError(f"unsupported envFrom source {sorted(source)}")
        obj = lookup(ref.get("name", ""))
        if obj is None:
            if ref.get("optional", False):
                continue
            raise ContainerConfigError(f'{kind} "{ref.get("name", "")}" not found')
        for key, data in secret_or_configmap_data(obj, secret=is_secret).items():
            env[prefix + key] = data
    for var in container.get("env") or []:
        name = var["name"]
        if "valueFrom" not in var:
            env[name] = expand(str(var.get("value", "")), env)
            continue
        source = var["valueFrom"]
        value: str | None
        if "secretKeyRef" in source:
            value = _key_ref("secret", source["secretKeyRef"], secret, secret=True)
        elif "configMapKeyRef" in source:
            value = _key_ref("configmap", source["configMapKeyRef"], configmap, secret=False)
        elif "fieldRef" in source:
            value = field_ref(pod, source["fieldRef"].get("fieldPath", ""))
        elif "resourceFieldRef" in source:
            value = resource_field_ref(pod, container, source["resourceFieldRef"], allocatable)
        else:
            raise ContainerConfigError(f"unsupported valueFrom source {sorted(source)}")
        if value is not None:
            env[name] = value
    return env


# --- paths ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PathMap:
    """In-container paths (mount points, the termination-message file) → host paths.

    With `keep_existing`, a path *below* a mount point that already exists on this host is left
    alone: pods run on the test host, and a test may hand them a host file under, say, /tmp
    while the pod also mounts an emptyDir at /tmp.
    """

    mounts: tuple[tuple[str, str], ...]
    keep_existing: bool = False

    @classmethod
    def of(cls, mapping: Mapping[str, str], *, keep_existing: bool = False) -> PathMap:
        # Longest container path first, so a nested mount wins over its parent.
        items = sorted(
            ((c.rstrip("/") or "/", h) for c, h in mapping.items()), key=lambda m: -len(m[0])
        )
        return cls(tuple(items), keep_existing)

    def path(self, value: str) -> str:
        """Rewrite one path; anything outside the mapped paths is returned unchanged."""
        for container_path, host_path in self.mounts:
            if value == container_path:
                return host_path
            if value.startswith(container_path + "/"):
                if self.keep_existing and os.path.exists(value):
                    return value
                return host_path + value[len(container_path) :]
        return value

    def word(self, value: str) -> str:
        """Rewrite a path, or the value of a `--flag=/path` argument."""
        rewritten = self.path(value)
        if rewritten != value or "=" not in value:
            return rewritten
        flag, _, rest = value.partition("=")
        return f"{flag}={self.path(rest)}"


# --- images -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageMapping:
    """Images whose name contains `match` run locally.

    `entrypoint` stands for the image's ENTRYPOINT: it is used when the container gives no
    `command`. A given command runs as written, except that a Python interpreter named in it
    becomes this test run's interpreter and `aliases` name further entrypoint executables.
    """

    match: str
    entrypoint: tuple[str, ...]
    aliases: tuple[str, ...] = ()

    def argv(self, command: Sequence[str], args: Sequence[str]) -> list[str]:
        if not command:
            return [*self.entrypoint, *args]
        first = os.path.basename(command[0])
        if first in self.aliases:
            return [*self.entrypoint, *command[1:], *args]
        if re.fullmatch(r"python(3(\.\d+)?)?", first):
            return [sys.executable, *command[1:], *args]
        return [*command, *args]


TRANSCODER_IMAGE = ImageMapping(
    match="videoflix-transcoder",
    entrypoint=(sys.executable, "-m", "videoflix_transcoder"),
    aliases=("videoflix-transcoder", "videoflix_transcoder"),
)
# For the harness's own tests: no dependency on the transcoder.
TEST_SHELL_IMAGE = ImageMapping(match="videoflix-test-shell", entrypoint=("/bin/sh", "-c"))
DEFAULT_IMAGES: tuple[ImageMapping, ...] = (TRANSCODER_IMAGE, TEST_SHELL_IMAGE)


def container_argv(
    container: Obj, images: Sequence[ImageMapping], env: Mapping[str, str], paths: PathMap
) -> list[str]:
    """The local argv for a container: image mapping, `$(VAR)` expansion, path rewriting."""
    image = str(container.get("image", ""))
    # Match on the repository name only, so a registry host or tag cannot select a mapping.
    repository = image.split("@", 1)[0].rsplit("/", 1)[-1].split(":", 1)[0]
    mapping = next((m for m in images if m.match in repository), None)
    if mapping is None:
        known = ", ".join(m.match for m in images) or "none"
        raise ImageNotMapped(
            f"local kubelet cannot run image {image!r}: no local entrypoint maps it "
            f"(mapped image names: {known})"
        )
    command = [paths.word(expand(str(c), env)) for c in container.get("command") or []]
    args = [paths.word(expand(str(a), env)) for a in container.get("args") or []]
    return mapping.argv(command, args)


# --- termination message ----------------------------------------------------------------------


def termination_message(file_content: bytes, log_tail: bytes, *, policy: str, failed: bool) -> str:
    """The message the kubelet reports: the file, or the log tail under FallbackToLogsOnError."""
    message = file_content[:MAX_TERMINATION_MESSAGE_BYTES]
    if not message.strip() and failed and policy == "FallbackToLogsOnError":
        lines = log_tail.splitlines(keepends=True)[-FALLBACK_LOG_LINES:]
        message = b"".join(lines)[-FALLBACK_LOG_BYTES:]
    return message.decode("utf-8", "replace")
