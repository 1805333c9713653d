"""Exactly the Kubernetes API rights the operator needs; the chart renders its Role from this.

    python -m videoflix_operator.rbac      prints the rules as YAML

A test compares the chart's rendered Role with `RULES`, so neither can grow rights unnoticed.
"""

from __future__ import annotations

import sys

import yaml
from videoflix_core.transcode import GROUP, PLURAL

RULES: list[dict[str, list[str]]] = [
    # The CRs: watch (kopf), read, patch for finalizer and kopf's progress annotations; delete
    # orphans (a CR whose videos row is gone, e.g. after a failed cancel).
    {
        "apiGroups": [GROUP],
        "resources": [PLURAL],
        "verbs": ["get", "list", "watch", "patch", "delete"],
    },
    {"apiGroups": [GROUP], "resources": [f"{PLURAL}/status"], "verbs": ["get", "patch"]},
    # Transcode Jobs: create, watch, release (patch suspend), delete superseded ones.
    {
        "apiGroups": ["batch"],
        "resources": ["jobs"],
        "verbs": ["get", "list", "watch", "create", "patch", "delete"],
    },
    # Pods of those Jobs: read termination messages (results); never write.
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
    # Their logs' last lines: the transcoder's progress percent while a step runs.
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
    # Kubernetes Events for milestones and failures (kopf posts core/v1 Events).
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
]
# Nothing cluster-scoped: the operator watches one namespace with kopf's CRD/namespace scanning
# off (see main.py), so a namespaced Role is all it gets.


def main() -> int:
    sys.stdout.write(yaml.safe_dump(RULES, sort_keys=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
