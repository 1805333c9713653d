"""JSON logs with a request id, Prometheus metrics, and the middleware that feeds both."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_STANDARD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
access_log = logging.getLogger("videoflix_api.access")


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the current request id and any `extra=` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id:
            entry["request_id"] = request_id
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str, json_logs: bool) -> None:
    handler = logging.StreamHandler()
    if json_logs:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn's own access log would duplicate ours, without the request id.
    logging.getLogger("uvicorn.access").disabled = True


class Metrics:
    """The API's Prometheus metrics, in a registry of their own (one per app instance)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "videoflix_http_requests",
            "HTTP requests handled",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "videoflix_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.auth_failures = Counter(
            "videoflix_auth_failures",
            "Refused authentication attempts",
            ["reason"],
            registry=self.registry,
        )
        self.uploads = Counter(
            "videoflix_uploads", "Finished source uploads", ["kind"], registry=self.registry
        )
        self.upload_bytes = Counter(
            "videoflix_upload_bytes",
            "Bytes of finished source uploads",
            ["kind"],
            registry=self.registry,
        )
        # dependency: database or s3 (see `dependency_of`); the operator exports the same name.
        self.dependency_errors = Counter(
            "videoflix_dependency_errors",
            "Calls to the database or S3 that failed",
            ["dependency"],
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "videoflix_rate_limited",
            "Requests refused by a rate limit",
            ["scope"],
            registry=self.registry,
        )


_DEPENDENCIES = {
    "sqlalchemy": "database",
    "psycopg": "database",
    "psycopg_pool": "database",
    "botocore": "s3",
    "boto3": "s3",
    "s3transfer": "s3",
}


def dependency_of(exc: BaseException) -> str | None:
    """The dependency an unhandled error came from (by the raising library), None if neither.

    Follows the cause chain: a wrapped driver error still counts against its dependency."""
    seen: BaseException | None = exc
    for _ in range(10):  # cause chains are short; the bound guards against cycles
        if seen is None:
            return None
        found = _DEPENDENCIES.get(type(seen).__module__.split(".")[0])
        if found is not None:
            return found
        seen = seen.__cause__ or seen.__context__
    return None


def route_template(scope: Scope) -> str:
    """The path template of the matched route (bounded label cardinality), or "unmatched"."""
    matched = scope.get("route")  # set by the router on the shared scope once it matched
    if matched is not None and hasattr(matched, "path"):
        return str(matched.path)
    app = scope.get("app")
    router = getattr(app, "router", None)
    for route in getattr(router, "routes", []):
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return str(getattr(route, "path", "unmatched"))
    return "unmatched"


class RequestContextMiddleware:
    """Assigns the request id, logs one access line, and records the request's metrics."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope.get("headers", [])).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _VALID_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        status = 500
        start = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception as exc:
            dependency = dependency_of(exc)
            if dependency is not None:
                self.metrics.dependency_errors.labels(dependency).inc()
            raise
        finally:
            elapsed = time.perf_counter() - start
            route = route_template(scope)
            method = scope["method"]
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(elapsed)
            access_log.info(
                "%s %s %s",
                method,
                scope["path"],
                status,
                extra={
                    "method": method,
                    "path": scope["path"],
                    "route": route,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 2),
                },
            )
            request_id_var.reset(token)
