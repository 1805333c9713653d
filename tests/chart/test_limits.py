"""The chart's memory limits come from measurements: each at least the figure recorded next to its
bench (bench/figures.json) times the headroom, so a release whose memory grew fails here, not as
an OOM-kill loop in a cluster."""

from __future__ import annotations

import json
import re

import pytest

from .helm import CHART, REPO, Obj, find, render

FIGURES = json.loads((REPO / "bench" / "figures.json").read_text())
HEADROOM = FIGURES["headroom"]
UNITS = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "K": 1e3 / 2**20, "M": 1e6 / 2**20, "G": 1e9 / 2**20}


def mib(quantity: str) -> float:
    """A Kubernetes memory quantity in MiB (the suffixes the chart may use)."""
    match = re.fullmatch(r"([0-9.]+)(Ki|Mi|Gi|K|M|G)?", quantity)
    assert match, f"unexpected memory quantity {quantity!r}"
    number, unit = match.groups()
    return float(number) * UNITS[unit] if unit else float(number) / 2**20


def test_quantities_parse() -> None:
    assert mib("256Mi") == 256 and mib("1Gi") == 1024 and mib("512Ki") == 0.5
    assert mib(str(64 * 2**20)) == 64


@pytest.fixture(scope="module")
def chart_defaults() -> list[Obj]:
    # The smallest install: secrets inline, every resource setting the chart's own default.
    return render([CHART / "ci" / "default-values.yaml"])


@pytest.mark.parametrize("component", ["operator", "api"])
def test_memory_limit_covers_the_measured_peak(chart_defaults: list[Obj], component: str) -> None:
    figure = FIGURES[component]
    deployment = find(chart_defaults, "Deployment", f"-{component}")
    [container] = [
        c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == component
    ]
    limit = mib(container["resources"]["limits"]["memory"])
    needed = figure["peak_rss_mib"] * HEADROOM
    assert limit >= needed, (
        f"{component}: memory limit {limit:.0f} MiB < {HEADROOM} x the measured peak "
        f"{figure['peak_rss_mib']} MiB ({figure['measured_by']}): raise "
        f"{component}.resources.limits.memory in charts/videoflix/values.yaml to >= {needed:.0f}Mi"
    )
    request = mib(container["resources"]["requests"]["memory"])
    assert request <= limit
