"""The app's route table, flattened: every (method, path) it serves."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from fastapi import FastAPI

UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _flatten(routes: Iterable[Any], context: Any = None) -> Iterator[tuple[str, str]]:
    for route in routes:
        # FastAPI ≥ 0.165 keeps included routers as one `_IncludedRouter` entry each, whose
        # include context knows the prefix; older ones copy the routes into `app.routes`.
        inner = getattr(route, "original_router", None)
        if inner is not None:
            child = route.include_context
            yield from _flatten(inner.routes, child if context is None else context.combine(child))
            continue
        path = context.path_for(route) if context is not None else route.path
        methods = set(getattr(route, "methods", None) or ())
        # HEAD is answered by the GET endpoint (Starlette adds it): the same route, not a new one.
        for method in sorted(methods - {"HEAD"} if "GET" in methods else methods):
            yield method, path


def route_table(app: FastAPI) -> set[tuple[str, str]]:
    """Every (method, path template) the app serves, including the undocumented ones."""
    return set(_flatten(app.routes))


def unsafe_routes(app: FastAPI) -> list[tuple[str, str]]:
    return sorted(r for r in route_table(app) if r[0] in UNSAFE)
