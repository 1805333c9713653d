"""Manifests for harness tests: Jobs on the test-only image `videoflix-test-shell`, the
harness's own Widget CRD, and small helpers to read pods and processes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

Obj = dict[str, Any]

TEST_IMAGE = "videoflix-test-shell:local"

# A CRD of the harness itself, installed at session start (before the controllers, so the
# garbage collector knows the kind at once): tests use Widgets as custom owners and to
# check schema validation without depending on the project's CRD.
WIDGET_GROUP = "harness.videoflix.io"
WIDGET_CRD: Obj = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"widgets.{WIDGET_GROUP}"},
    "spec": {
        "group": WIDGET_GROUP,
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["size"],
                                "properties": {
                                    "size": {"type": "integer", "minimum": 1, "maximum": 10},
                                    "color": {"type": "string", "enum": ["red", "blue"]},
                                },
                            }
                        },
                    }
                },
            }
        ],
    },
}
HARNESS_CRDS: tuple[Obj, ...] = (WIDGET_CRD,)


def container(script: str, *, name: str = "main", **fields: Any) -> Obj:
    """A container running a /bin/sh script (the test image's entrypoint is `sh -c`)."""
    return {"name": name, "image": TEST_IMAGE, "args": [script], **fields}


def python_container(code: str, *, name: str = "main", **fields: Any) -> Obj:
    """A container running Python code (`python` becomes the test run's interpreter)."""
    return {"name": name, "image": TEST_IMAGE, "command": ["python", "-c", code], **fields}


def job(
    name: str,
    containers: list[Obj],
    *,
    backoff_limit: int = 0,
    pod_spec: Obj | None = None,
    metadata: Obj | None = None,
    **spec: Any,
) -> Obj:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, **(metadata or {})},
        "spec": {
            "backoffLimit": backoff_limit,
            "template": {
                "spec": {"restartPolicy": "Never", "containers": containers, **(pod_spec or {})}
            },
            **spec,
        },
    }


def jobs_path(namespace: str, name: str = "") -> str:
    return f"/apis/batch/v1/namespaces/{namespace}/jobs" + (f"/{name}" if name else "")


def pods_path(namespace: str, name: str = "") -> str:
    return f"/api/v1/namespaces/{namespace}/pods" + (f"/{name}" if name else "")


def terminated(pod: Obj, container_name: str = "main") -> Obj:
    """The terminated state of a pod's container ({} while not terminated)."""
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status["name"] == container_name:
            result: Obj = (status.get("state") or {}).get("terminated") or {}
            return result
    return {}


def process_alive(pid: int) -> bool:
    """True while the process runs; a zombie (exited, not yet reaped by init) counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state follows the parenthesised command name, which may itself contain spaces.
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line contains the text (e.g. a control plane's dir)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline and process_alive(int(entry.name)):
            found.append(int(entry.name))
    return found
