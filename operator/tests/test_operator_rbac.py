from __future__ import annotations

import subprocess
import sys

import yaml
from videoflix_operator.rbac import RULES


def test_rules_are_minimal_and_namespaced() -> None:
    by_resource = {(tuple(r["apiGroups"]), tuple(r["resources"])): set(r["verbs"]) for r in RULES}
    assert by_resource[(("",), ("pods",))] == {"get", "list"}  # read results, never write pods
    assert "create" in by_resource[(("batch",), ("jobs",))]
    assert not any("*" in v for verbs in by_resource.values() for v in verbs)
    assert not any(r == ("secrets",) for _, r in by_resource)  # S3 secret is mounted, not read
    assert ("videoflix.io",) in {g for g, _ in by_resource}


def test_cli_prints_the_same_rules_as_yaml() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "videoflix_operator.rbac"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert yaml.safe_load(out) == RULES
