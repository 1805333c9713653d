"""Staff-only video management: create, upload (streamed or presigned multipart), edit, replace,
delete, retry."""

from __future__ import annotations

import logging
import math
import secrets
from collections.abc import AsyncIterator
from datetime import timedelta

from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect
from videoflix_core import storage as keys
from videoflix_core.db import Video

from videoflix_api.config import Settings
from videoflix_api.deps import (
    BaseUrlDep,
    DispatcherDep,
    MetricsDep,
    SessionDep,
    SettingsDep,
    StaffUser,
    StorageDep,
)
from videoflix_api.errors import FieldErrors, error_responses, validation_errors
from videoflix_api.routes.videos import require_video, video_detail
from videoflix_api.schemas import (
    MultipartComplete,
    MultipartPartsRequest,
    MultipartPartUrls,
    MultipartStart,
    MultipartStarted,
    PartUrl,
    VideoCreate,
    VideoDetail,
    VideoUpdate,
)
from videoflix_api.services import outbox, uploads
from videoflix_api.services import videos as svc
from videoflix_api.services.storage import NotSupported, Storage, StorageError, UploadSink

log = logging.getLogger(__name__)
router = APIRouter(prefix="/videos", tags=["staff"], responses=error_responses(401, 403, 404))

# Hand chunks to the storage thread in batches: one thread hop per MiB, not per socket read.
_BATCH = 1024 * 1024
_FORM_OVERHEAD = 64 * 1024
_UPLOAD_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "title": {"type": "string", "maxLength": 200},
                        "description": {"type": "string", "maxLength": 5000},
                        "category": {"type": "string", "maxLength": 64},
                        "file": {"type": "string", "format": "binary"},
                    },
                }
            }
        },
    }
}


class UploadTooLarge(Exception):
    pass


def _too_large(settings: Settings) -> HTTPException:
    return HTTPException(413, f"The upload exceeds the limit of {settings.upload_max_bytes} bytes.")


def _check_length(request: Request, settings: Settings) -> None:
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > settings.upload_max_bytes + _FORM_OVERHEAD:
        raise _too_large(settings)


async def _stream_file(
    events: AsyncIterator[uploads.FormEvent], sink: UploadSink, limit: int
) -> int:
    """Copy the file part's chunks into `sink` until its end; raises UploadTooLarge past `limit`."""
    batch = bytearray()
    total = 0
    async for event in events:
        if isinstance(event, uploads.FileChunk):
            total += len(event.data)
            if total > limit:
                raise UploadTooLarge
            batch += event.data
            if len(batch) >= _BATCH:
                await run_in_threadpool(sink.write, bytes(batch))
                batch.clear()
        elif isinstance(event, uploads.FileEnd):
            if batch:
                await run_in_threadpool(sink.write, bytes(batch))
            return total
    raise uploads.FormError("The file part ended early.")


@router.post("/", status_code=201, response_model=VideoDetail)
def create_video(
    body: VideoCreate,
    user: StaffUser,
    session: SessionDep,
    settings: SettingsDep,
    storage: StorageDep,
    base: BaseUrlDep,
) -> VideoDetail:
    """Create a video from metadata; its source follows by presigned multipart upload
    (`/videos/{id}/multipart/…`) or by `PUT /videos/{id}/source/`."""
    video = svc.create_video(
        session,
        title=body.title,
        description=body.description,
        category=body.category,
        created_by=user.id,
    )
    return video_detail(video, False, settings, storage, base)


@router.post(
    "/upload/",
    status_code=201,
    response_model=VideoDetail,
    openapi_extra=_UPLOAD_DOC,
    responses={413: {"description": "Too large."}, **error_responses(400)},
)
async def upload_video(
    request: Request,
    user: StaffUser,
    session: SessionDep,
    settings: SettingsDep,
    storage: StorageDep,
    dispatcher: DispatcherDep,
    metrics: MetricsDep,
    base: BaseUrlDep,
) -> VideoDetail:
    """Create a video and stream its source through the API (multipart/form-data).

    Send the `title`, `description` and `category` fields before `file`: the file is streamed to
    storage while it arrives (never held in memory), up to the configured size limit.
    """
    _check_length(request, settings)
    fields: dict[str, str] = {}
    events = uploads.iter_form(request)
    video: Video | None = None
    sink: UploadSink | None = None
    try:
        async for event in events:
            if isinstance(event, uploads.FormField):
                fields[event.name] = event.value
            elif isinstance(event, uploads.FileStart):
                if event.name != "file":
                    raise FieldErrors({event.name: ["Unexpected file field."]})
                try:
                    meta = VideoCreate.model_validate(fields)
                except ValidationError as exc:
                    raise FieldErrors(
                        validation_errors([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()])
                    ) from exc
                video = await run_in_threadpool(_create_row, session, meta, user.id)
                key = _source_key(video, event.filename)
                sink = storage.open_upload(key, event.content_type)
                size = await _stream_file(events, sink, settings.upload_max_bytes)
                await run_in_threadpool(sink.commit)
                sink = None
                metrics.uploads.labels("api").inc()
                metrics.upload_bytes.labels("api").inc(size)
                await run_in_threadpool(
                    svc.set_source, session, storage, dispatcher, video, key, size
                )
                return video_detail(video, False, settings, storage, base)
        raise FieldErrors({"file": ["No file was submitted."]})
    except BaseException as exc:
        if sink is not None:
            await run_in_threadpool(sink.abort)
        if video is not None:
            await run_in_threadpool(_drop_row, session, storage, video.id)
        if isinstance(exc, UploadTooLarge):
            raise _too_large(settings) from None
        if isinstance(exc, uploads.FormError):
            raise HTTPException(400, str(exc)) from None
        if isinstance(exc, ClientDisconnect):
            log.info("Upload aborted by the client")
            raise HTTPException(400, "The upload was interrupted.") from None
        raise


def _create_row(session: SessionDep, meta: VideoCreate, user_id: int) -> Video:
    video = svc.create_video(
        session,
        title=meta.title,
        description=meta.description,
        category=meta.category,
        created_by=user_id,
    )
    # Committed now: the upload may take minutes, and the id names the storage prefix.
    session.commit()
    return video


def _drop_row(session: SessionDep, storage: Storage, video_id: int) -> None:
    session.rollback()
    video = session.get(Video, video_id)
    if video is not None:
        session.delete(video)
        session.commit()
    try:
        storage.delete_prefix(keys.video_prefix(video_id))
    except StorageError:
        log.warning("Could not clean up a failed upload", extra={"video_id": video_id})


@router.put(
    "/{video_id}/source/",
    response_model=VideoDetail,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {"file": {"type": "string", "format": "binary"}},
                    }
                }
            },
        }
    },
    responses={413: {"description": "Too large."}},
)
async def replace_source(
    video_id: int,
    request: Request,
    user: StaffUser,
    session: SessionDep,
    settings: SettingsDep,
    storage: StorageDep,
    dispatcher: DispatcherDep,
    metrics: MetricsDep,
    base: BaseUrlDep,
) -> VideoDetail:
    """Upload (or replace) the source of a video, streamed; starts a new transcode generation."""
    video = await run_in_threadpool(require_video, session, video_id)
    _check_length(request, settings)
    events = uploads.iter_form(request)
    sink: UploadSink | None = None
    try:
        async for event in events:
            if isinstance(event, uploads.FileStart) and event.name == "file":
                key = _source_key(video, event.filename)
                sink = storage.open_upload(key, event.content_type)
                size = await _stream_file(events, sink, settings.upload_max_bytes)
                await run_in_threadpool(sink.commit)
                sink = None
                metrics.uploads.labels("api").inc()
                metrics.upload_bytes.labels("api").inc(size)
                await run_in_threadpool(
                    svc.set_source, session, storage, dispatcher, video, key, size
                )
                favorite = await run_in_threadpool(svc.is_favorite, session, user.id, video.id)
                return video_detail(video, favorite, settings, storage, base)
        raise FieldErrors({"file": ["No file was submitted."]})
    except BaseException as exc:
        if sink is not None:
            await run_in_threadpool(sink.abort)
        if isinstance(exc, UploadTooLarge):
            raise _too_large(settings) from None
        if isinstance(exc, uploads.FormError):
            raise HTTPException(400, str(exc)) from None
        if isinstance(exc, ClientDisconnect):
            raise HTTPException(400, "The upload was interrupted.") from None
        raise


@router.patch("/{video_id}/", response_model=VideoDetail)
def update_video(
    video_id: int,
    body: VideoUpdate,
    user: StaffUser,
    session: SessionDep,
    settings: SettingsDep,
    storage: StorageDep,
    base: BaseUrlDep,
) -> VideoDetail:
    """Change title, description or category."""
    video = require_video(session, video_id)
    svc.update_video(session, video, body.model_dump(exclude_unset=True))
    return video_detail(video, svc.is_favorite(session, user.id, video.id), settings, storage, base)


@router.delete("/{video_id}/", status_code=204, response_class=Response)
def delete_video(
    video_id: int,
    user: StaffUser,
    session: SessionDep,
    storage: StorageDep,
    dispatcher: DispatcherDep,
) -> Response:
    """Delete the video, its transcode, and everything stored under its prefix."""
    video = require_video(session, video_id)
    svc.delete_video(session, storage, dispatcher, video)
    return Response(status_code=204)


@router.post(
    "/{video_id}/retry/",
    response_model=VideoDetail,
    responses={
        409: {"description": "Only failed videos (or pending ones not handed over) can be retried."}
    },
)
def retry_video(
    video_id: int,
    user: StaffUser,
    session: SessionDep,
    settings: SettingsDep,
    storage: StorageDep,
    dispatcher: DispatcherDep,
    base: BaseUrlDep,
) -> VideoDetail:
    """Start a failed transcode again (a new transcode generation); also a `pending` one whose
    hand-over to the pipeline is still owed after the outbox grace period."""
    video = require_video(session, video_id)
    grace = timedelta(seconds=settings.outbox_grace_seconds)
    refusal = outbox.retry_refusal(video, outbox.utcnow(), grace)
    if refusal is not None:
        raise HTTPException(409, refusal)
    svc.retry(session, dispatcher, video)
    return video_detail(video, svc.is_favorite(session, user.id, video.id), settings, storage, base)


def _source_key(video: Video, filename: str) -> str:
    # A new name per upload, so the current source stays intact until the new one is complete,
    # and two concurrent replaces never write the same object (the generation is only known
    # under the row lock, after the upload).
    # The name is made safe first: a path in it ("a/b.mp4", "C:\\x\\b.mp4") would otherwise cut
    # off the unique part, and every upload named so would write the same object.
    return keys.source_key(video.id, f"u{secrets.token_hex(6)}-{keys.safe_filename(filename)}")


@router.post(
    "/{video_id}/multipart/",
    status_code=201,
    response_model=MultipartStarted,
    responses={413: {"description": "Too large."}, 501: {"description": "Unsupported."}},
)
def start_multipart(
    video_id: int,
    body: MultipartStart,
    user: StaffUser,
    session: SessionDep,
    settings: SettingsDep,
    storage: StorageDep,
) -> MultipartStarted:
    """Begin a presigned multipart upload straight to storage (for large sources).

    Then ask for part URLs, PUT each part to its URL, and complete with the parts' ETags.
    """
    video = require_video(session, video_id)
    if body.size > settings.multipart_upload_max_bytes:
        raise HTTPException(
            413, f"The upload exceeds the limit of {settings.multipart_upload_max_bytes} bytes."
        )
    part_size = max(settings.multipart_part_bytes, math.ceil(body.size / 10_000))
    key = _source_key(video, body.filename)
    if video.upload_id and video.upload_key:
        _abort_quietly(storage, video.upload_key, video.upload_id)
    try:
        upload_id = storage.start_multipart(key, body.content_type)
    except NotSupported as exc:
        raise HTTPException(501, "This storage does not support presigned uploads.") from exc
    video.upload_id, video.upload_key = upload_id, key
    return MultipartStarted(
        upload_id=upload_id,
        key=key,
        part_size=part_size,
        part_count=math.ceil(body.size / part_size),
    )


def _abort_quietly(storage: Storage, key: str, upload_id: str) -> None:
    try:
        storage.abort_multipart(key, upload_id)
    except StorageError:
        log.warning("Could not abort a previous upload", extra={"key": key})


def _pending_upload(video: Video) -> tuple[str, str]:
    if not video.upload_id or not video.upload_key:
        raise HTTPException(409, "No multipart upload in progress.")
    return video.upload_key, video.upload_id


@router.post(
    "/{video_id}/multipart/parts/",
    response_model=MultipartPartUrls,
    responses=error_responses(409),
)
def multipart_part_urls(
    video_id: int,
    body: MultipartPartsRequest,
    user: StaffUser,
    session: SessionDep,
    settings: SettingsDep,
    storage: StorageDep,
) -> MultipartPartUrls:
    """Presigned PUT URLs for the given part numbers of the upload in progress."""
    key, upload_id = _pending_upload(require_video(session, video_id))
    expires = settings.presign_expiry_seconds * 4
    return MultipartPartUrls(
        urls=[
            PartUrl(
                part_number=n, url=storage.multipart_part_url(key, upload_id, n, expires_in=expires)
            )
            for n in sorted(set(body.part_numbers))
        ],
        expires_in=expires,
    )


@router.post(
    "/{video_id}/multipart/complete/",
    response_model=VideoDetail,
    responses={413: {"description": "Too large."}, **error_responses(409)},
)
def complete_multipart(
    video_id: int,
    body: MultipartComplete,
    user: StaffUser,
    session: SessionDep,
    settings: SettingsDep,
    storage: StorageDep,
    dispatcher: DispatcherDep,
    metrics: MetricsDep,
    base: BaseUrlDep,
) -> VideoDetail:
    """Assemble the uploaded parts into the source and start its transcode."""
    video = require_video(session, video_id)
    key, upload_id = _pending_upload(video)
    parts = sorted({(p.part_number, p.etag) for p in body.parts})
    try:
        storage.complete_multipart(key, upload_id, parts)
    except StorageError as exc:
        raise FieldErrors({"parts": [f"Storage refused the parts: {exc}"]}) from exc
    size = storage.size(key) or 0
    if size > settings.multipart_upload_max_bytes:
        storage.delete(key)
        video.upload_id = video.upload_key = None
        session.commit()
        raise HTTPException(
            413, f"The upload exceeds the limit of {settings.multipart_upload_max_bytes} bytes."
        )
    metrics.uploads.labels("multipart").inc()
    metrics.upload_bytes.labels("multipart").inc(size)
    svc.set_source(session, storage, dispatcher, video, key, size)
    return video_detail(video, svc.is_favorite(session, user.id, video.id), settings, storage, base)


@router.delete(
    "/{video_id}/multipart/",
    status_code=204,
    response_class=Response,
    responses=error_responses(409),
)
def abort_multipart(
    video_id: int,
    user: StaffUser,
    session: SessionDep,
    storage: StorageDep,
) -> Response:
    """Abandon the multipart upload in progress (its parts are discarded)."""
    video = require_video(session, video_id)
    key, upload_id = _pending_upload(video)
    _abort_quietly(storage, key, upload_id)
    video.upload_id = video.upload_key = None
    return Response(status_code=204)
