"""Container mode of the local kubelet: a pod's containers run with podman, not as processes.

What a kubelet hands its container runtime, and only that: the pod's image (never pulled: it
must be in local storage, see tests/images/build.py), command/args with `$(VAR)` expansion (as
ENTRYPOINT/CMD overrides), the env as podenv resolves it, the pod's volumes as bind mounts at
their mount paths (emptyDir as a 0777 dir, as a kubelet makes it), the security context
(`runAsUser`/`runAsGroup`, `readOnlyRootFilesystem`, capabilities, `allowPrivilegeEscalation`,
`runAsNonRoot`), and the termination log as a host file mounted at `terminationMessagePath`,
which the kubelet reads after the container exits. Host network: the test servers listen on
loopback, as in process mode.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .podenv import ContainerConfigError, expand

Obj = dict[str, Any]


@dataclass(frozen=True)
class ContainerMode:
    """How to reach podman: its argv prefix and env (config/storage), e.g. from tests.images."""

    podman: tuple[str, ...]
    env: Mapping[str, str]
    network: str = "host"
    _users: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.podman, *args], env=dict(self.env), capture_output=True, text=True, check=False
        )

    def image_user(self, image: str) -> str:
        """The image's USER ("" = root), for runAsNonRoot; ContainerConfigError when absent."""
        if image not in self._users:
            result = self.run("image", "inspect", "--format={{json .Config.User}}", image)
            if result.returncode != 0:
                raise ContainerConfigError(
                    f"image {image!r} is not in local storage (container mode never pulls)"
                )
            self._users[image] = str(json.loads(result.stdout.strip() or '""'))
        return self._users[image]


def security(pod: Obj, container: Obj) -> Obj:
    """The effective security context: the container's fields over the pod's."""
    pod_context = pod["spec"].get("securityContext") or {}
    own = container.get("securityContext") or {}
    keys = ("runAsUser", "runAsGroup", "runAsNonRoot")
    merged: Obj = {k: pod_context[k] for k in keys if k in pod_context}
    merged.update(own)
    if "fsGroup" in pod_context:
        merged["fsGroup"] = pod_context["fsGroup"]
    return merged


def uid_of(user: str) -> int | None:
    """The numeric uid of an image USER (`10001`, `10001:10001`); None for a name."""
    first = user.split(":", 1)[0]
    if first == "":
        return 0
    return int(first) if first.isdigit() else None


def security_args(context: Obj, image_user: str) -> list[str]:
    args: list[str] = []
    user = context.get("runAsUser")
    group = context.get("runAsGroup")
    if user is not None:
        args.append(f"--user={user}:{group}" if group is not None else f"--user={user}")
    elif group is not None:
        args.append(f"--user={uid_of(image_user) or 0}:{group}")
    if context.get("runAsNonRoot"):
        uid = user if user is not None else uid_of(image_user)
        if uid is None or int(uid) == 0:
            # What a kubelet says when it cannot prove the container is not root.
            raise ContainerConfigError(
                "container has runAsNonRoot and image will run as root"
                if uid == 0
                else "container has runAsNonRoot and image has non-numeric user, cannot verify"
            )
    if "fsGroup" in context:
        args.append(f"--group-add={context['fsGroup']}")
    if context.get("readOnlyRootFilesystem"):
        # No tmpfs on /tmp, /run, /var/tmp: a pod gets only the volumes it declares.
        args += ["--read-only", "--read-only-tmpfs=false"]
    capabilities = context.get("capabilities") or {}
    args += [f"--cap-drop={c}" for c in capabilities.get("drop") or []]
    args += [f"--cap-add={c}" for c in capabilities.get("add") or []]
    if context.get("allowPrivilegeEscalation") is False:
        args.append("--security-opt=no-new-privileges")
    if context.get("privileged"):
        args.append("--privileged")
    return args


def run_argv(
    mode: ContainerMode,
    pod: Obj,
    container: Obj,
    *,
    name: str,
    env: Mapping[str, str],
    mounts: Sequence[tuple[Path, str, bool]],
    image_user: str,
) -> list[str]:
    """`podman run …` for one container; mounts are (host path, mount path, read-only)."""
    image = str(container.get("image") or "")
    if not image:
        raise ContainerConfigError(f"container {container['name']!r} has no image")
    command = [expand(str(c), env) for c in container.get("command") or []]
    args = [expand(str(a), env) for a in container.get("args") or []]
    argv = [
        *mode.podman,
        "run",
        "--rm",
        f"--name={name}",
        "--pull=never",
        f"--network={mode.network}",
        f"--hostname={pod['metadata']['name']}",
        # SIGTERM to `podman run` reaches PID 1 in the container, as a runtime's stop does.
        "--sig-proxy=true",
        *security_args(security(pod, container), image_user),
    ]
    for host, path, read_only in mounts:
        argv.append(f"--volume={host}:{path}:{'ro' if read_only else 'rw'}")
    argv += [f"--env={k}={v}" for k, v in sorted(env.items())]
    if container.get("workingDir"):
        argv.append(f"--workdir={container['workingDir']}")
    if command:
        # Kubernetes: `command` replaces ENTRYPOINT and, without `args`, the image's CMD too.
        argv.append(f"--entrypoint={json.dumps(command)}")
    argv.append(image)
    argv += args
    return argv


def container_name(pod: Obj, container: Obj) -> str:
    """Unique per pod incarnation, named as a kubelet does: k8s_<container>_<pod>_<ns>_<uid>."""
    meta = pod["metadata"]
    return f"k8s_{container['name']}_{meta['name']}_{meta['namespace']}_{meta['uid'][:8]}"
