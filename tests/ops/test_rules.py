"""The chart's alerts, rendered by the real Helm, checked and unit-tested by the real promtool:
every alert fires on synthetic series that should fire it, and stays silent on ones that should not.

Series carry the labels Prometheus adds through the chart's ServiceMonitors (namespace, service);
promtool's clock starts at 0, so `time()` at `eval_time: 30m` is 1800.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tests.ops.promql import (
    API,
    API_SERVICE,
    OP,
    OPERATOR_SERVICE,
    RUNBOOKS,
    alerts,
    grouping_labels,
    promtool,
    rendered_rule_groups,
    write_rules,
)

pytestmark = pytest.mark.usefixtures("promtool_available")


@dataclass(frozen=True)
class Case:
    what: str
    series: dict[str, str]
    at: str
    # Labels of each alert expected to be firing at `at` (besides alertname and severity).
    fires: list[dict[str, str]] = field(default_factory=list)


def fire(what: str, series: dict[str, str], at: str, *labels: dict[str, str]) -> Case:
    return Case(what, series, at, list(labels) or [{}])


def silent(what: str, series: dict[str, str], at: str) -> Case:
    return Case(what, series, at, [])


def bucket(route: str, le: str) -> str:
    return (
        f'videoflix_http_request_duration_seconds_bucket{{{API}, method="GET", route="{route}", '
        f'le="{le}"}}'
    )


FAILED = f'videoflix_jobs_failed_total{{{OP}, rendition="720p"}}'
SUCCEEDED = f'videoflix_jobs_succeeded_total{{{OP}, rendition="720p"}}'
QUEUE = f"videoflix_queue_depth{{{OP}}}"
CAP = f"videoflix_max_running_jobs{{{OP}}}"
OLDEST = f"videoflix_oldest_active_transcode_age_seconds{{{OP}}}"
STEP_AGE = f"videoflix_oldest_running_step_age_seconds{{{OP}}}"
HEARTBEAT = f"videoflix_last_reconcile_timestamp_seconds{{{OP}}}"
ACTIVE = f'videoflix_transcodes{{{OP}, phase="Transcoding"}}'
DONE = f'videoflix_transcodes{{{OP}, phase="Succeeded"}}'
OK_REQUESTS = (
    f'videoflix_http_requests_total{{{API}, method="GET", route="/videos/", status="200"}}'
)
ERRORS = f'videoflix_http_requests_total{{{API}, method="GET", route="/videos/", status="500"}}'
SLOW_ROUTE = "/videos/"
UPLOAD_ROUTE = "/videos/{video_id}/source/"


def dependency(service_labels: str, name: str) -> str:
    return f'videoflix_dependency_errors_total{{{service_labels}, dependency="{name}"}}'


# Thresholds of ci/full-values.yaml (the defaults of metrics.prometheusRule): 3 failures an hour;
# ratio 0.25 over ≥ 8 steps; queue growing 30 min; backlog 5 x cap; stuck 180 min; longest Job
# deadline (7200 s there) + 10 min; no reconcile 15 min; 5 % 5xx; p99 2.5 s; 5 dependency errors.
CASES: dict[str, list[Case]] = {
    "VideoflixTranscodesFailing": [
        fire("a failure a minute", {FAILED: "0+1x90"}, "70m"),
        silent("two failures in the hour", {FAILED: "0x30 1x30 2x30"}, "80m"),
    ],
    "VideoflixTranscodeFailureRatio": [
        # No success series at all: the success counter appears only with the first success.
        fire("every step fails", {FAILED: "0+1x90"}, "70m"),
        fire("half the steps fail", {FAILED: "0+1x90", SUCCEEDED: "0+1x90"}, "70m"),
        silent("one in eleven fails", {FAILED: "0+1x90", SUCCEEDED: "0+10x90"}, "70m"),
        silent("too few steps to judge", {FAILED: "0x30 1x30 2x30"}, "80m"),
    ],
    "VideoflixTranscodeQueueGrowing": [
        fire("a Job more waits each minute", {QUEUE: "0+1x100"}, "80m"),
        silent("a long but steady queue", {QUEUE: "10x100"}, "80m"),
    ],
    "VideoflixTranscodeBacklog": [
        fire("30 waiting behind a cap of 4", {QUEUE: "30x60", CAP: "4x60"}, "30m"),
        silent("15 waiting behind a cap of 4", {QUEUE: "15x60", CAP: "4x60"}, "30m"),
        silent("not for 15 minutes yet", {QUEUE: "30x60", CAP: "4x60"}, "10m"),
    ],
    "VideoflixWorkStuck": [
        fire("the oldest video ages past 3 h", {OLDEST: "0+60x300"}, "200m"),
        silent("work keeps finishing", {OLDEST: "600x300"}, "200m"),
        silent("no unfinished work", {OLDEST: "0x300"}, "200m"),
    ],
    "VideoflixTranscodeJobOverdue": [
        fire("a step runs 160 min", {STEP_AGE: "0+120x100"}, "80m"),
        silent("the long step finished at 50 min", {STEP_AGE: "0+60x50 0x50"}, "80m"),
    ],
    "VideoflixOperatorNotReconciling": [
        fire(
            "no reconcile for 20 min while a video transcodes",
            {ACTIVE: "1x60", HEARTBEAT: "0+60x10 600x50"},
            "30m",
        ),
        silent("reconciling every minute", {ACTIVE: "1x60", HEARTBEAT: "0+60x60"}, "30m"),
        silent(
            "no reconcile, but no work either",
            {ACTIVE: "0x60", DONE: "5x60", HEARTBEAT: "0+60x10 600x50"},
            "30m",
        ),
    ],
    "VideoflixApi5xx": [
        fire("9 % errors", {OK_REQUESTS: "0+100x60", ERRORS: "0+10x60"}, "30m"),
        silent("1 % errors", {OK_REQUESTS: "0+100x60", ERRORS: "0+1x60"}, "30m"),
    ],
    "VideoflixApiSlow": [
        fire(
            "every request between 2.5 and 5 s",
            {
                bucket(SLOW_ROUTE, "2.5"): "0x60",
                bucket(SLOW_ROUTE, "5"): "0+10x60",
                bucket(SLOW_ROUTE, "+Inf"): "0+10x60",
            },
            "30m",
        ),
        silent(
            "every request under 0.1 s",
            {
                bucket(SLOW_ROUTE, "0.1"): "0+10x60",
                bucket(SLOW_ROUTE, "2.5"): "0+10x60",
                bucket(SLOW_ROUTE, "+Inf"): "0+10x60",
            },
            "30m",
        ),
        silent(
            "slow uploads only",
            {
                bucket(UPLOAD_ROUTE, "2.5"): "0x60",
                bucket(UPLOAD_ROUTE, "5"): "0+10x60",
                bucket(UPLOAD_ROUTE, "+Inf"): "0+10x60",
            },
            "30m",
        ),
    ],
    "VideoflixDependencyErrors": [
        fire(
            "the API's database calls fail, the operator's S3 calls too",
            {dependency(API, "database"): "0+1x60", dependency(OP, "s3"): "0+1x60"},
            "30m",
            {"service": API_SERVICE, "dependency": "database"},
            {"service": OPERATOR_SERVICE, "dependency": "s3"},
        ),
        silent("one error in 30 min", {dependency(API, "s3"): "0x15 1x45"}, "30m"),
    ],
    "VideoflixOperatorDown": [
        fire("the operator stopped answering at 10 min", {f"up{{{OP}}}": "1x10 0x30"}, "30m"),
        silent("the operator is scraped", {f"up{{{OP}}}": "1x40"}, "30m"),
    ],
}


def _params() -> list[object]:
    return [pytest.param(a, c, id=f"{a}: {c.what}") for a, cases in CASES.items() for c in cases]


def test_rendered_rules_pass_promtool_check(tmp_path: Path) -> None:
    path = write_rules(tmp_path / "rules.yaml", rendered_rule_groups())
    result = promtool("check", "rules", path.name, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in result.stdout


def test_promtool_check_catches_a_broken_rule(tmp_path: Path) -> None:
    """The check above can fail: a bad expression does not pass."""
    groups = [{"name": "broken", "rules": [{"alert": "Broken", "expr": "sum(rate(x[5m])"}]}]
    result = promtool("check", "rules", write_rules(tmp_path / "r.yaml", groups).name, cwd=tmp_path)
    assert result.returncode != 0


def test_every_alert_has_cases_both_ways() -> None:
    assert set(CASES) == set(alerts())
    for name, cases in CASES.items():
        assert any(c.fires for c in cases), f"{name}: no case where it fires"
        assert any(not c.fires for c in cases), f"{name}: no case where it stays silent"


@pytest.mark.parametrize(("alert", "case"), _params())
def test_alert(alert: str, case: Case, tmp_path: Path) -> None:
    rule = alerts()[alert]
    write_rules(tmp_path / "rules.yaml", rendered_rule_groups(), annotations=False)
    test = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": s, "values": v} for s, v in case.series.items()],
                "alert_rule_test": [
                    {
                        "eval_time": case.at,
                        "alertname": alert,
                        "exp_alerts": [
                            {"exp_labels": {**labels, **rule["labels"]}} for labels in case.fires
                        ],
                    }
                ],
            }
        ],
    }
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(test, sort_keys=False))
    result = promtool("test", "rules", "test.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def _anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_alert_links_its_runbook_section() -> None:
    sections = {
        _anchor(line[3:]): line[3:]
        for line in RUNBOOKS.read_text().splitlines()
        if line.startswith("## ")
    }
    for name, rule in alerts().items():
        url = rule["annotations"]["runbook_url"]
        assert url.startswith("https://") and "/docs/runbooks.md#" in url, (name, url)
        anchor = url.rsplit("#", 1)[1]
        assert anchor in sections, f"{name}: no section '{anchor}' in docs/runbooks.md"
        assert sections[anchor] == name
        body = RUNBOOKS.read_text().split(f"## {name}\n", 1)[1].split("\n## ", 1)[0]
        for part in ("**Confirm**", "**Fix**", "kubectl "):
            assert part in body, f"{name}: runbook section lacks {part}"


# Labels an alert may group by: each has a handful of values, never one per video or user.
BOUNDED = {"service", "dependency", "phase", "le", "route", "status", "rendition", "kind"}


def test_alerts_carry_bounded_labels_only() -> None:
    for name, rule in alerts().items():
        assert grouping_labels(rule["expr"]) <= BOUNDED, name
        assert set(rule["labels"]) == {"severity"}, name
        assert rule["labels"]["severity"] in ("warning", "critical"), name
