"""Errors shaped as Django REST Framework shapes them: `{"detail": …}` or field → [messages]."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from videoflix_api.schemas import Detail

# Why each error status happens, as OpenAPI shows it; every one has a `{"detail": …}` body.
_ERRORS: dict[int, str] = {
    400: "Invalid input.",  # its body is spelt out by `document_refusals`
    401: "Not signed in, or the access token is invalid or expired.",
    403: "Not allowed: a staff-only route, an unconfirmed account, or a cross-site request "
    "refused by the CSRF check.",
    404: "No such resource.",
    409: "The resource is not in a state that allows this.",
    413: "The body or the declared size is too large.",
    429: "Too many attempts: retry after the `Retry-After` seconds.",
}
_BAD_REQUEST = "Invalid input: `{field: [messages]}` (DRF's shape), or `{detail}`."
_CSRF = "Refused by the CSRF check: the request's origin is not trusted."
_UNSAFE = ("post", "put", "patch", "delete")


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries for the error statuses a route (or router) can answer."""
    return {status: {"model": Detail, "description": _ERRORS[status]} for status in statuses}


def document_refusals(schema: dict[str, Any]) -> dict[str, Any]:
    """What every operation may answer besides its own statuses, added to the OpenAPI document:
    invalid input is a 400 (`install_error_handlers`), never FastAPI's 422; and the CSRF
    middleware may refuse any unsafe request with 403."""
    schema.setdefault("components", {}).setdefault("schemas", {})["FieldErrors"] = {
        "title": "FieldErrors",
        "type": "object",
        "additionalProperties": {"type": "array", "items": {"type": "string"}},
    }
    bad_request = {
        "description": _BAD_REQUEST,
        "content": {
            "application/json": {
                "schema": {
                    "anyOf": [
                        {"$ref": "#/components/schemas/FieldErrors"},
                        {"$ref": "#/components/schemas/Detail"},
                    ]
                }
            }
        },
    }
    detail = {"application/json": {"schema": {"$ref": "#/components/schemas/Detail"}}}
    for methods in schema.get("paths", {}).values():
        for method, operation in methods.items():
            responses = operation.setdefault("responses", {})
            if responses.pop("422", None) is not None or "400" in responses:
                responses["400"] = bad_request
            if method in _UNSAFE:
                responses.setdefault("403", {"description": _CSRF, "content": detail})
    schema["components"]["schemas"].pop("HTTPValidationError", None)
    schema["components"]["schemas"].pop("ValidationError", None)
    return schema


class FieldErrors(Exception):
    """Validation failures found in a handler or service, keyed by field (400)."""

    def __init__(self, errors: dict[str, list[str]]):
        super().__init__(errors)
        self.errors = errors


def _field_name(loc: Sequence[int | str]) -> str:
    # ("body", "email") -> "email"; ("query", "quality") -> "quality"; ("body",) -> non_field_errors
    parts = (
        [str(p) for p in loc[1:]]
        if loc and loc[0] in ("body", "query", "path", "header", "cookie")
        else [str(p) for p in loc]
    )
    return ".".join(parts) or "non_field_errors"


def _message(error: dict[str, Any]) -> str:
    kind = error.get("type", "")
    if kind == "missing":
        return "This field is required."
    msg = str(error.get("msg", "Invalid value."))
    # pydantic prefixes messages raised from validators; the client wants the sentence itself.
    return msg.removeprefix("Value error, ")


def validation_errors(errors: Sequence[Any]) -> dict[str, list[str]]:
    """Turn pydantic/FastAPI validation errors into DRF's {field: [messages]} without internals."""
    shaped: dict[str, list[str]] = {}
    for error in errors:
        field = _field_name(error.get("loc", ()))
        if error.get("type") in ("json_invalid", "model_attributes_type", "dict_type") or (
            field == "non_field_errors"
        ):
            shaped.setdefault("non_field_errors", []).append(
                "Invalid JSON body."
                if error.get("type") == "json_invalid"
                else "Expected a JSON object."
                if error.get("type") in ("model_attributes_type", "dict_type")
                else _message(error)
            )
            continue
        shaped.setdefault(field, []).append(_message(error))
    return shaped


def _documented(app: FastAPI) -> Callable[[], dict[str, Any]]:
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_refusals(build())
        return app.openapi_schema

    return openapi


def install_error_handlers(app: FastAPI) -> None:
    """The handlers shaping errors, and the OpenAPI document saying so (`document_refusals`)."""
    app.openapi = _documented(app)  # type: ignore[method-assign]

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(validation_errors(exc.errors()), status_code=400)

    @app.exception_handler(FieldErrors)
    async def _fields(request: Request, exc: FieldErrors) -> JSONResponse:
        return JSONResponse(exc.errors, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail
        if exc.status_code == 404 and detail == "Not Found":
            detail = "Not found."
        elif exc.status_code == 405 and detail == "Method Not Allowed":
            detail = f'Method "{request.method}" not allowed.'
        return JSONResponse(
            {"detail": detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None)
        )

    @app.exception_handler(DataError)
    async def _data(request: Request, exc: DataError) -> JSONResponse:
        # The database refused a value that passed validation (e.g. a NUL byte in text, which
        # PostgreSQL cannot store): the client's input is at fault, not the server.
        return JSONResponse(
            {"detail": "Invalid characters or values in the input."}, status_code=400
        )

    @app.exception_handler(Exception)
    async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
        # Logged with the request id by the server; the client only learns that it failed.
        import logging

        logging.getLogger("videoflix_api").exception("Unhandled error")
        return JSONResponse({"detail": "Internal server error."}, status_code=500)
