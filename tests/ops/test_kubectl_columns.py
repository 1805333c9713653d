"""What `kubectl get vt -o wide` shows someone on call, read as kubectl reads it: the API server's
Table rendering of the CRD's printer columns, for a video whose Jobs hang and then finish."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.procs import wait_until
from tests.operator.conftest import Platform

pytestmark = pytest.mark.cluster
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"


def wide_row(p: Platform, name: str) -> dict[str, Any]:
    """The `-o wide` row of one CR by column name (kubectl asks for the Table, every column)."""
    response = httpx.get(
        f"{p.kube.server}{p.path('vt', name)}",
        headers={"Authorization": f"Bearer {p.kube.token}", "Accept": TABLE},
        params={"includeObject": "None"},
        verify=ssl.create_default_context(cafile=p.kube.ca_file),
        timeout=10,
    )
    response.raise_for_status()
    table = response.json()
    names = [c["name"] for c in table["columnDefinitions"]]
    wide = {c["name"] for c in table["columnDefinitions"] if c.get("priority") == 1}
    assert {"Step", "Attempts", "Running"} <= wide, names
    return dict(zip(names, table["rows"][0]["cells"], strict=True))


def test_wide_columns_show_the_running_step_its_attempts_and_since_when(
    hanging_platform: tuple[Platform, Path], sources: dict[str, Path]
) -> None:
    p, release = hanging_platform
    _vid, name = p.transcode(sources["tiny"])
    wait_until(lambda: wide_row(p, name)["Step"] == "probe", "the probe to run", 60)
    row = wide_row(p, name)
    assert row["Phase"] == "Probing" and row["Attempts"] >= 1, row
    assert row["Running"], row  # kubectl prints it as an age ("12s")
    release.write_text("go")
    p.wait_phase(name, "Succeeded")
    row = wide_row(p, name)
    assert row["Step"] in (None, "", "<none>"), row  # nothing runs any more
    assert row["Running"] in (None, "", "<none>"), row
    assert row["Attempts"] >= 3, row  # probe, the one rung of a tiny source, the thumbnail
