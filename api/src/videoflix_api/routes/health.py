"""Liveness, readiness and metrics for the ingress, Kubernetes probes and Prometheus."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

log = logging.getLogger(__name__)
router = APIRouter(tags=["operations"])


@router.get("/health")
@router.get("/health/")
@router.get("/healthz")
def health() -> dict[str, str]:
    """The process is up (no dependency is checked: a database outage must not restart pods)."""
    return {"status": "ok"}


def _check(request: Request) -> dict[str, str]:
    checks: dict[str, str] = {}
    try:
        with request.app.state.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        log.warning("Database not ready", extra={"error": str(exc)})
        checks["database"] = "unavailable"
    try:
        request.app.state.storage.ping()
        checks["storage"] = "ok"
    except Exception as exc:
        log.warning("Storage not ready", extra={"error": str(exc)})
        checks["storage"] = "unavailable"
    return checks


@router.get("/ready", responses={503: {"description": "A dependency is unavailable."}})
async def ready(request: Request) -> JSONResponse:
    """Ready to serve: the database and the storage bucket answer."""
    if getattr(request.app.state, "shutting_down", False):
        return JSONResponse({"status": "shutting down"}, status_code=503)
    checks = await run_in_threadpool(_check, request)
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ok" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503
    )


@router.get("/metrics", response_class=Response, include_in_schema=False)
def metrics(request: Request) -> Response:
    """Prometheus metrics of this process."""
    return Response(
        generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST
    )
