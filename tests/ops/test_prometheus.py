"""A real Prometheus (built from its Go module) scrapes a running operator and API on loopback with
the chart's rendered scrape settings and evaluates the chart's rendered rules: the stuck-work alert
fires for a video whose Jobs hang, and resolves once they are let go and the video is done.

Only the rules' `for:` durations are shortened (and the stuck threshold set to 15 s through the
chart's own value, which takes fractions of a minute); the expressions are the chart's.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.chart.helm import find_all, render
from tests.fixtures.procs import free_port, stop, wait_until
from tests.operator.conftest import Platform
from tests.ops.apisupport import api as api_support
from tests.ops.promql import (
    API_SERVICE,
    FULL,
    NAMESPACE,
    OPERATOR_SERVICE,
    ToolUnavailable,
    tool_binary,
    write_rules,
)

pytestmark = pytest.mark.cluster
HERE = Path(__file__).resolve().parent
SCRAPE = {"metrics.serviceMonitor.interval": "1s", "metrics.prometheusRule.workStuckMinutes": 0.25}


def prometheus_binary() -> str:
    try:
        return tool_binary("prometheus")
    except ToolUnavailable as error:
        pytest.skip(f"prometheus unavailable (tools/gotool.sh prometheus needs Go): {error}")
        raise


def scrape_config(monitor: dict[str, Any], job: str, port: str, service: str) -> dict[str, Any]:
    """What the Prometheus Operator makes of a rendered ServiceMonitor, for a loopback target."""
    endpoint = monitor["spec"]["endpoints"][0]
    return {
        "job_name": job,
        "metrics_path": endpoint["path"],
        "scrape_interval": endpoint["interval"],
        "static_configs": [
            {
                "targets": [f"127.0.0.1:{port}"],
                "labels": {"namespace": NAMESPACE, "service": service},
            }
        ],
    }


def alert_state(url: str, name: str) -> str | None:
    alerts = httpx.get(f"{url}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
    states = [a["state"] for a in alerts if a["labels"]["alertname"] == name]
    return states[0] if states else None


def test_stuck_work_alert_fires_and_resolves(
    hanging_platform: tuple[Platform, Path],
    sources: dict[str, Path],
    settings: Any,
    helm_available: str,
    tmp_path: Path,
) -> None:
    binary = prometheus_binary()
    objects = render([FULL], SCRAPE)
    monitors = {m["metadata"]["name"]: m for m in find_all(objects, "ServiceMonitor")}
    groups = next(o for o in objects if o["kind"] == "PrometheusRule")["spec"]["groups"]
    for group in groups:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = "2s"
    write_rules(tmp_path / "rules.yaml", groups)

    p, release = hanging_platform

    with api_support.serve(api_support.build_app(settings)) as api:
        api_port = api.rsplit(":", 1)[1]
        config = {
            "global": {"evaluation_interval": "1s"},
            "rule_files": ["rules.yaml"],
            "scrape_configs": [
                scrape_config(
                    monitors[OPERATOR_SERVICE],
                    "operator",
                    p.operator.env["VIDEOFLIX_METRICS_PORT"],
                    OPERATOR_SERVICE,
                ),
                scrape_config(monitors[API_SERVICE], "api", api_port, API_SERVICE),
            ],
        }
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log = (tmp_path / "prometheus.log").open("wb")
        proc = subprocess.Popen(
            [
                binary,
                "--config.file=prometheus.yml",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_until(
                lambda: httpx.get(f"{url}/-/ready", timeout=2).status_code == 200, "prometheus", 60
            )
            _vid, name = p.transcode(sources["tiny"])
            started = time.monotonic()

            def targets_up() -> bool:
                data = httpx.get(f"{url}/api/v1/targets", timeout=5).json()["data"]
                return (
                    all(t["health"] == "up" for t in data["activeTargets"])
                    and len(data["activeTargets"]) == 2
                )

            wait_until(targets_up, "both targets scraped", 60)
            # The Jobs hang: the video is unfinished for more than the 15-second threshold.
            wait_until(
                lambda: alert_state(url, "VideoflixWorkStuck") == "firing", "stuck alert", 150
            )
            assert time.monotonic() - started >= 14, "fired before the video was 15 s old"
            assert p.cr(name)["status"]["phase"] != "Succeeded"  # type: ignore[index]
            rules = httpx.get(f"{url}/api/v1/rules", timeout=5).json()["data"]["groups"]
            evaluated = [r for g in rules for r in g["rules"]]
            assert len(evaluated) == sum(len(g["rules"]) for g in groups)
            assert all(r["health"] == "ok" for r in evaluated), [
                (r["name"], r.get("lastError")) for r in evaluated if r["health"] != "ok"
            ]
            # No other alert fires for this healthy (if slow) platform.
            firing = {
                a["labels"]["alertname"]
                for a in httpx.get(f"{url}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
                if a["state"] == "firing"
            }
            assert firing == {"VideoflixWorkStuck"}

            release.write_text("go")
            p.wait_phase(name, "Succeeded")
            wait_until(lambda: alert_state(url, "VideoflixWorkStuck") is None, "alert resolved", 60)
        finally:
            stop(proc)
            log.close()
