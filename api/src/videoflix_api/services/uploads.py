"""Streaming multipart/form-data parsing: the file part flows through in chunks."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from videoflix_api.schemas import MIME_TYPE

OCTET_STREAM = "application/octet-stream"


def stored_content_type(declared: str) -> str:
    """The Content-Type a form's file is stored with: the declared one when it is a bare MIME
    type; anything else (control characters, which S3 refuses in the header) as opaque bytes."""
    return declared if declared and re.fullmatch(MIME_TYPE, declared) else OCTET_STREAM


class FormError(ValueError):
    """The body is not a form we can read."""


@dataclass(frozen=True)
class FormField:
    name: str
    value: str


@dataclass(frozen=True)
class FileStart:
    name: str
    filename: str
    content_type: str


@dataclass(frozen=True)
class FileChunk:
    data: bytes


@dataclass(frozen=True)
class FileEnd:
    pass


FormEvent = FormField | FileStart | FileChunk | FileEnd


async def iter_form(
    request: Request, *, max_field_bytes: int = 64 * 1024, max_fields: int = 20
) -> AsyncIterator[FormEvent]:
    """Parse the request body as multipart/form-data while it arrives, yielding events in order."""
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data" or b"boundary" not in params:
        raise FormError("Expected a multipart/form-data body.")

    events: list[FormEvent] = []
    header_field = bytearray()
    header_value = bytearray()
    headers: dict[bytes, bytes] = {}
    part: dict[str, object] = {}
    field_count = 0

    def on_part_begin() -> None:
        headers.clear()
        part.clear()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header_field.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header_value.extend(data[start:end])

    def on_header_end() -> None:
        headers[bytes(header_field).lower()] = bytes(header_value)
        header_field.clear()
        header_value.clear()

    def on_headers_finished() -> None:
        nonlocal field_count
        _, disposition = parse_options_header(headers.get(b"content-disposition", b""))
        name = disposition.get(b"name", b"").decode("utf-8", "replace")
        filename = disposition.get(b"filename")
        if filename is not None:
            ctype = stored_content_type(headers.get(b"content-type", b"").decode("latin-1"))
            part.update(kind="file", name=name)
            events.append(FileStart(name, filename.decode("utf-8", "replace"), ctype))
        else:
            field_count += 1
            if field_count > max_fields:
                raise FormError("Too many form fields.")
            part.update(kind="field", name=name, value=bytearray())

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if part.get("kind") == "file":
            events.append(FileChunk(bytes(data[start:end])))
        else:
            value = part["value"]
            assert isinstance(value, bytearray)
            value.extend(data[start:end])
            if len(value) > max_field_bytes:
                raise FormError(f"Form field {part['name']!r} is too long.")

    def on_part_end() -> None:
        if part.get("kind") == "file":
            events.append(FileEnd())
        elif part.get("kind") == "field":
            value = part["value"]
            assert isinstance(value, bytearray)
            events.append(FormField(str(part["name"]), value.decode("utf-8", "replace")))

    parser = MultipartParser(
        params[b"boundary"],
        {
            "on_part_begin": on_part_begin,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
        },
    )
    async for chunk in request.stream():
        try:
            parser.write(chunk)
        except FormError:
            raise
        except Exception as exc:  # python-multipart raises its own parse errors
            raise FormError("Malformed multipart body.") from exc
        for event in events:
            yield event
        events.clear()
    parser.finalize()
    for event in events:
        yield event
