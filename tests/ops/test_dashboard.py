"""Every query of the Grafana dashboard parses as PromQL (by the real promtool) and selects metrics
by names the code can export."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.ops.promql import (
    dashboard,
    dashboard_queries,
    exposed_names,
    metric_names,
    promtool,
    write_rules,
)


def test_metric_names_of_an_expression() -> None:
    """The extraction the metric-name checks rely on (labels, functions, strings are not names)."""
    expr = (
        'histogram_quantile(0.99, sum by (le, route) (rate(a_seconds_bucket{route!~".*/x/",'
        ' service="b-c"}[5m]))) > 2.5 and on(service) (time() - max(c_ts) offset 5m) > 1e3'
        ' or vector(0) unless absent(up{job="d"} == 1)'
    )
    assert metric_names(expr) == {"a_seconds_bucket", "c_ts", "up"}


def test_exposed_names_add_the_suffixes_prometheus_sees() -> None:
    assert exposed_names([("x", "counter"), ("h", "histogram"), ("g", "gauge")]) == {
        "x_total",
        "x_created",
        "h_bucket",
        "h_sum",
        "h_count",
        "h_created",
        "g",
    }


def test_dashboard_has_queries_for_the_alerts_signals() -> None:
    names = set().union(*(metric_names(q) for q in dashboard_queries().values()))
    for metric in (
        "videoflix_oldest_active_transcode_age_seconds",
        "videoflix_oldest_running_step_age_seconds",
        "videoflix_last_reconcile_timestamp_seconds",
        "videoflix_dependency_errors_total",
        "videoflix_http_request_duration_seconds_bucket",
        "videoflix_queue_depth",
    ):
        assert metric in names, metric
    ids = [p["id"] for p in dashboard()["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"


@pytest.mark.usefixtures("promtool_available")
def test_every_dashboard_query_parses(tmp_path: Path) -> None:
    """Each query as a recording rule: `promtool check rules` parses it with Prometheus's parser."""
    queries = dashboard_queries()
    assert len(queries) >= 15
    rules = [{"record": f"dashboard:query_{i}", "expr": q} for i, q in enumerate(queries.values())]
    path = write_rules(tmp_path / "dashboard.yaml", [{"name": "dashboard", "rules": rules}])
    result = promtool("check", "rules", path.name, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr + "\n" + "\n".join(queries)
    # And it would have said so: a query broken on purpose fails the same check.
    broken = [{"record": "dashboard:broken", "expr": next(iter(queries.values()))[:-2]}]
    path = write_rules(tmp_path / "broken.yaml", [{"name": "dashboard", "rules": broken}])
    assert promtool("check", "rules", path.name, cwd=tmp_path).returncode != 0
