"""The metrics the alerts and the dashboard name are the ones a running API and a running operator
export after one real transcode; and the new error metrics count real failures."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import botocore.exceptions
import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from videoflix_api.config import Settings
from videoflix_core.status import on_call_summary
from videoflix_core.transcode import VideoTranscodeStatus
from videoflix_operator import metrics as operator_metrics

from tests.fixtures.procs import free_port
from tests.operator.conftest import Platform
from tests.ops.apisupport import api as api_support
from tests.ops.promql import alerts, dashboard_queries, exposed_names, metric_names

# Labels our metrics may carry: each has a handful of values (never a video id, name or user).
BOUNDED = {
    "phase",
    "step",
    "rendition",
    "kind",
    "dependency",
    "method",
    "route",
    "status",
    "reason",
    "scope",
    "le",
}


def scrape(url: str) -> tuple[set[str], list[Any]]:
    """(series names PromQL can select, the videoflix_* samples) of one /metrics page."""
    families = list(text_string_to_metric_families(httpx.get(url, timeout=10).text))
    names = exposed_names([(f.name, f.type) for f in families])
    samples = [s for f in families if f.name.startswith("videoflix_") for s in f.samples]
    return names, samples


def value(samples: list[Any], name: str) -> float:
    return float(next(s.value for s in samples if s.name == name))


@pytest.mark.cluster
def test_alerts_and_dashboard_name_only_exported_metrics(
    make_platform: Any, sources: dict[str, Path], settings: Settings, helm_available: str
) -> None:
    p: Platform = make_platform()
    _vid, name = p.transcode(sources["tiny"])
    with api_support.serve(api_support.build_app(settings)) as api:
        # A few real requests: a success, a client error, a refused login.
        assert httpx.get(f"{api}/health", timeout=10).status_code == 200
        assert httpx.get(f"{api}/no-such-page/", timeout=10).status_code == 404
        refused = httpx.post(
            f"{api}/users/login/", json={"email": "x@example.com", "password": "wrong"}, timeout=10
        )
        assert refused.status_code in (400, 401)
        p.wait_phase(name, "Succeeded")
        api_names, api_samples = scrape(f"{api}/metrics")
    port = p.operator.env["VIDEOFLIX_METRICS_PORT"]
    op_names, op_samples = scrape(f"http://127.0.0.1:{port}/metrics")
    exported = api_names | op_names | {"up"}  # `up` is Prometheus's own, per target

    named: dict[str, set[str]] = {
        f"alert {a}": metric_names(r["expr"]) for a, r in alerts().items()
    }
    named |= {f"dashboard {q}": metric_names(expr) for q, expr in dashboard_queries().items()}
    missing = {what: names - exported for what, names in named.items() if names - exported}
    assert not missing, f"metrics named but not exported: {missing}"
    assert all(named.values()), "every query names at least one metric"

    # Bounded labels only, on every series either component exports.
    for sample in api_samples + op_samples:
        assert set(sample.labels) <= BOUNDED, (sample.name, sample.labels)
    # The new operator gauges say what happened: nothing left unfinished, a reconcile just now.
    assert value(op_samples, "videoflix_oldest_active_transcode_age_seconds") == 0
    assert value(op_samples, "videoflix_oldest_running_step_age_seconds") == 0
    assert value(op_samples, "videoflix_max_running_jobs") == 4
    assert time.time() - value(op_samples, "videoflix_last_reconcile_timestamp_seconds") < 120


def test_api_counts_database_errors(settings: Settings) -> None:
    """A request that fails because PostgreSQL is unreachable counts as a database error."""
    unreachable = f"postgresql+psycopg://videoflix:x@127.0.0.1:{free_port()}/videoflix"
    app = api_support.build_app(settings.model_copy(update={"database_url": unreachable}))
    try:
        client = TestClient(app, base_url=api_support.BASE, raise_server_exceptions=False)
        response = client.post(
            "/users/login/", json={"email": "x@example.com", "password": "correct horse"}
        )
        assert response.status_code == 500
        assert app.state.metrics.dependency_errors.labels("database")._value.get() >= 1
        text = client.get("/metrics").text
        assert 'videoflix_dependency_errors_total{dependency="database"}' in text
        # A client error is no dependency error.
        healthy = api_support.build_app(settings)
        ok = TestClient(healthy, base_url=api_support.BASE, raise_server_exceptions=False)
        assert ok.get("/no-such-page/").status_code == 404
        assert "videoflix_dependency_errors_total{dependency=" not in ok.get("/metrics").text
        healthy.state.engine.dispose()
    finally:
        app.state.engine.dispose()


def test_operator_error_kinds() -> None:
    s3 = botocore.exceptions.EndpointConnectionError(endpoint_url="http://127.0.0.1:1")
    assert operator_metrics.error_kind(s3, database=False) == "s3"
    assert operator_metrics.error_kind(RuntimeError("row"), database=True) == "database"
    assert operator_metrics.error_kind(httpx.ConnectError("api server"), database=False) == (
        "cluster"
    )


def test_operator_ages_count_unfinished_work_only() -> None:
    """The stuck-work gauges: oldest unfinished CR by creation, longest running step by start."""
    status = VideoTranscodeStatus.model_validate(
        {
            "phase": "Transcoding",
            "probe": {"phase": "Succeeded", "startedAt": "2026-01-01T00:00:00Z"},
            "renditions": {
                "360p": {"phase": "Running", "startedAt": "2026-01-01T00:10:00Z"},
                "720p": {"phase": "Queued"},
            },
        }
    )
    step, attempts, since = on_call_summary(status)
    assert (step, attempts, since) == ("360p", 0, "2026-01-01T00:10:00Z")
    status.running_since = since  # as status.aggregate sets it
    created = "2026-01-01T00:00:00Z"
    now = operator_metrics.tracked(status, created).created or 0.0
    running = operator_metrics.tracked(status, created)
    done = operator_metrics.tracked(status.model_copy(update={"phase": "Succeeded"}), created)
    assert operator_metrics.oldest_ages([running, done], now + 3600) == (3600.0, 3000.0)
    assert operator_metrics.oldest_ages([done], now + 3600) == (0.0, 0.0)
    assert operator_metrics.oldest_ages([], now) == (0.0, 0.0)
