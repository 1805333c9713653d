"""The chart's alerts and dashboard as promtool sees them: rendered by the real Helm, checked and
unit-tested by the real promtool (built from its Go module by tools/gotool.sh)."""

from __future__ import annotations

import json
import re
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from tests.chart.helm import CHART, NAMESPACE, RELEASE, REPO, find, render

FULL = CHART / "ci" / "full-values.yaml"
DASHBOARD = CHART / "files" / "dashboards" / "videoflix.json"
RUNBOOKS = REPO / "docs" / "runbooks.md"
OPERATOR_SERVICE = f"{RELEASE}-videoflix-operator"
API_SERVICE = f"{RELEASE}-videoflix-api"
# The series labels Prometheus adds when scraping through the chart's ServiceMonitors.
OP = f'namespace="{NAMESPACE}", service="{OPERATOR_SERVICE}"'
API = f'namespace="{NAMESPACE}", service="{API_SERVICE}"'

Obj = dict[str, Any]


class ToolUnavailable(Exception):
    pass


@cache
def tool_binary(name: str) -> str:
    try:
        result = subprocess.run(
            [str(REPO / "tools" / "gotool.sh"), name], capture_output=True, text=True, check=True
        )
    except subprocess.CalledProcessError as error:
        raise ToolUnavailable(error.stderr.strip().splitlines()[-1]) from error
    return result.stdout.strip()


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool_binary("promtool"), *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


@cache
def rendered_rule_groups() -> tuple[Obj, ...]:
    """The `spec.groups` of the PrometheusRule the chart renders with monitoring on."""
    rule = find(render([FULL]), "PrometheusRule")
    return tuple(rule["spec"]["groups"])


def alerts() -> dict[str, Obj]:
    return {r["alert"]: r for g in rendered_rule_groups() for r in g["rules"] if "alert" in r}


def write_rules(path: Path, groups: list[Obj] | tuple[Obj, ...], annotations: bool = True) -> Path:
    """A Prometheus rules file. Without annotations for `promtool test rules`, which would otherwise
    compare every expanded description text: the tests are about when alerts fire."""
    if not annotations:
        groups = [
            {**g, "rules": [{k: v for k, v in r.items() if k != "annotations"} for r in g["rules"]]}
            for g in groups
        ]
    path.write_text(yaml.safe_dump({"groups": list(groups)}, sort_keys=False))
    return path


# Grafana's template variables, replaced by what a panel would send to Prometheus.
_GRAFANA_VARS = {
    "$namespace": NAMESPACE,
    "${namespace}": NAMESPACE,
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$__range": "1h",
}


def dashboard() -> Obj:
    data: Obj = json.loads(DASHBOARD.read_text())
    return data


def dashboard_queries() -> dict[str, str]:
    """Every PromQL query of the dashboard (panel targets, nested rows too), by a readable name,
    with Grafana's variables substituted."""
    queries: dict[str, str] = {}

    def panels(items: list[Obj]) -> list[Obj]:
        out: list[Obj] = []
        for p in items:
            out.append(p)
            out += panels(p.get("panels", []))
        return out

    for panel in panels(dashboard().get("panels", [])):
        for i, target in enumerate(panel.get("targets", [])):
            if target.get("expr"):
                queries[f"{panel.get('title')} #{i}"] = grafana_to_promql(target["expr"])
    for var in dashboard().get("templating", {}).get("list", []):
        query = var.get("query")
        if var.get("type") == "query" and isinstance(query, str):
            # label_values(<selector>, <label>) is Grafana's; the selector is PromQL.
            match = re.fullmatch(r"\s*label_values\((.*),\s*\w+\)\s*", query)
            queries[f"variable {var['name']}"] = grafana_to_promql(
                match.group(1) if match else query
            )
    return queries


def grafana_to_promql(expr: str) -> str:
    for var, value in _GRAFANA_VARS.items():
        expr = expr.replace(var, value)
    return expr


_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_MATCHERS = re.compile(r"\{[^}]*\}")
_IDENT = re.compile(r"(?<![\w:.])([A-Za-z_:][\w:]*)(?![\w:])(?!\s*\()")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "by", "without", "on"}


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects: identifiers left once strings, label matchers,
    grouping clauses, function calls and keywords are taken out."""
    bare = _GROUPING.sub(" ", _MATCHERS.sub(" ", _STRING.sub('""', expr)))
    bare = re.sub(r"\[[^\]]*\]", " ", bare)  # range and subquery durations
    return {m for m in _IDENT.findall(bare) if m.lower() not in _KEYWORDS}


def grouping_labels(expr: str) -> set[str]:
    """Labels named in `by (...)`: what an alert's series (and so its notifications) carry."""
    labels: set[str] = set()
    for clause in re.findall(r"\bby\s*\(([^)]*)\)", _STRING.sub('""', expr)):
        labels |= {part.strip() for part in clause.split(",") if part.strip()}
    return labels


def exposed_names(families: list[tuple[str, str]]) -> set[str]:
    """Series names a scrape yields for (family name, type) pairs, as PromQL must name them."""
    names: set[str] = set()
    for name, kind in families:
        if kind == "counter":
            names |= {f"{name}_total", f"{name}_created"}
        elif kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count", f"{name}_created"}
        elif kind == "summary":
            names |= {name, f"{name}_sum", f"{name}_count", f"{name}_created"}
        else:
            names.add(name)
    return names
