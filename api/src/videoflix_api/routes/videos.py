"""Videos for signed-in users: the frontend's `/content/…` endpoints, `/videos/…` listing, detail,
thumbnails, progressive files and HLS playlists."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, StreamingResponse
from pydantic import TypeAdapter
from sqlalchemy import Connection
from videoflix_core.db import Video
from videoflix_core.states import ProcessingState

from videoflix_api.config import Settings
from videoflix_api.deps import (
    BaseUrlDep,
    CurrentUser,
    Reader,
    ReaderDep,
    SessionDep,
    SettingsDep,
    StorageDep,
)
from videoflix_api.errors import FieldErrors, error_responses
from videoflix_api.schemas import (
    Categories,
    Detail,
    FavoriteToggle,
    VideoDetail,
    VideoPage,
    VideoPublic,
    VideoUrl,
)
from videoflix_api.services import playback
from videoflix_api.services import videos as svc
from videoflix_api.services.accounts import favorite_ids
from videoflix_api.services.storage import Storage, StorageError

content = APIRouter(prefix="/content", tags=["content"], responses=error_responses(401, 404))
router = APIRouter(prefix="/videos", tags=["videos"], responses=error_responses(401, 404))

HLS_TYPE = "application/vnd.apple.mpegurl"
VTT_TYPE = "text/vtt"
QualityName = Annotated[str, Query(pattern=r"^[1-9][0-9]{1,3}p$", description="e.g. 720p")]


def _asset_url(
    settings: Settings, storage: Storage, base: str, key: str | None, redirect_path: str
) -> str | None:
    """A public URL straight to storage when configured; else our redirecting endpoint.

    Never presigns here: lists call this for every item, and a presign costs ~0.3 ms each.
    """
    if not key:
        return None
    if settings.s3_public_base_url:
        return storage.url(key, expires_in=settings.presign_expiry_seconds)
    return f"{base}{redirect_path}"


def public_fields(
    video: svc.PublicVideo, settings: Settings, storage: Storage, base: str
) -> dict[str, Any]:
    """The fields of a video's `VideoPublic`, not yet validated (a page validates all at once)."""
    converted = video.converted_files or {}
    best = svc.best_rendition(converted)
    return {
        "id": video.id,
        "title": video.title,
        "description": video.description,
        "category": video.category,
        "created_at": video.created_at,
        "image_file": _asset_url(
            settings, storage, base, video.thumbnail_key, f"/videos/{video.id}/thumbnail/"
        ),
        "video_file": _asset_url(
            settings,
            storage,
            base,
            converted[best].get("file") if best else None,
            f"/videos/{video.id}/file/",
        ),
        # RenditionInfo keeps its own fields of each quality's info (not the storage keys).
        "converted_files": converted,
        "processing_state": video.processing_state,
        "processing_error": video.processing_error,
        "progress": video.progress,
        "duration_seconds": video.duration_seconds,
    }


def video_public(
    video: svc.PublicVideo, settings: Settings, storage: Storage, base: str
) -> VideoPublic:
    return VideoPublic.model_validate(public_fields(video, settings, storage, base))


# One validation call for a whole page: per item, pydantic's entry cost was most of the work.
_PAGE = TypeAdapter(list[VideoPublic])


def videos_public(
    videos: Iterable[svc.PublicVideo], settings: Settings, storage: Storage, base: str
) -> list[VideoPublic]:
    return _PAGE.validate_python([public_fields(v, settings, storage, base) for v in videos])


def video_detail(
    video: Video, favorite: bool, settings: Settings, storage: Storage, base: str
) -> VideoDetail:
    public = video_public(video, settings, storage, base)
    return VideoDetail(
        **public.model_dump(),
        is_favorite=favorite,
        hls_url=f"{base}/videos/{video.id}/hls/master.m3u8" if video.converted_files else None,
        has_source=video.source_key is not None,
        transcode_generation=video.transcode_generation,
    )


def _page(
    conn: Connection,
    settings: Settings,
    filters: svc.VideoFilter,
    *,
    limit: int | None,
    cursor: str | None,
) -> tuple[list[svc.VideoSummary], str | None]:
    size = min(limit or settings.page_size_default, settings.page_size_max)
    try:
        return svc.list_videos(conn, filters, limit=size, cursor=cursor)
    except svc.InvalidCursor as exc:
        raise FieldErrors({"cursor": [str(exc)]}) from exc


def require_video(session: SessionDep, video_id: int) -> Video:
    video = svc.get_video(session, video_id)
    if video is None:
        raise HTTPException(404, "Not found.")
    return video


Limit = Annotated[int | None, Query(ge=1, le=1000, description="Page size (capped).")]
Cursor = Annotated[str | None, Query(max_length=200)]
# No NUL in the text filters: PostgreSQL refuses it in text, and the whole catalogue is streamed,
# so a refusal by the database would come after the 200 and cut the body off; validated here,
# it is the documented 400 before anything is sent.
NO_NUL = r"^[^\x00]*$"
CategoryQ = Annotated[str | None, Query(max_length=64, pattern=NO_NUL)]
StateQ = Annotated[ProcessingState | None, Query()]
SearchQ = Annotated[str | None, Query(max_length=100, pattern=NO_NUL, description="Title contains")]


def next_page_headers(
    base: str, cursor: str, filters: svc.VideoFilter, limit: int | None
) -> dict[str, str]:
    """`X-Next-Cursor` and a `Link: rel="next"` that keeps the request's filters and page size."""
    params = {
        "category": filters.category,
        "processing_state": filters.state.value if filters.state else None,
        "search": filters.search,
        "limit": limit,
        "cursor": cursor,
    }
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return {"X-Next-Cursor": cursor, "Link": f'<{base}/content/?{query}>; rel="next"'}


def json_array(items: Iterable[bytes], chunk_bytes: int = 64 * 1024) -> Iterator[bytes]:
    """The JSON array of already encoded `items`, in chunks of about `chunk_bytes` (one chunk per
    item would cost a thread hop and a socket write each)."""
    chunk = bytearray(b"[")
    first = True
    for item in items:
        if not first:
            chunk += b","
        chunk += item
        first = False
        if len(chunk) >= chunk_bytes:
            yield bytes(chunk)
            chunk.clear()
    chunk += b"]"
    yield bytes(chunk)


@content.get("/", response_model=list[VideoPublic])
async def content_list(
    request: Request,
    reader: ReaderDep,
    settings: SettingsDep,
    storage: StorageDep,
    base: BaseUrlDep,
    response: Response,
    limit: Limit = None,
    cursor: Cursor = None,
    category: CategoryQ = None,
    processing_state: StateQ = None,
    search: SearchQ = None,
) -> list[VideoPublic] | StreamingResponse:
    """All videos, newest first, as a bare list (the frontend's shape; it cannot page).

    Without `limit` and `cursor` the whole catalogue is streamed; a deployment may cap it
    (`VIDEOFLIX_CONTENT_MAX_ITEMS`). Paging is opt-in with `limit`/`cursor` (keyset): when more
    exist, the `X-Next-Cursor` header and a `Link: rel="next"` (keeping the filters) name the next
    page; `/videos/` offers the same with the cursor in the body.
    """
    # Async with one thread-pool call for all of the blocking work (see `deps.Reader`).
    if limit is None and cursor is None:
        return await run_in_threadpool(
            _catalogue, request, reader, settings, storage, base, category, processing_state, search
        )
    page, headers = await run_in_threadpool(
        _content_page,
        reader,
        settings,
        storage,
        base,
        limit,
        cursor,
        svc.VideoFilter(category, processing_state, search),
    )
    response.headers.update(headers)
    return page


def _content_page(
    reader: Reader,
    settings: Settings,
    storage: Storage,
    base: str,
    limit: int | None,
    cursor: str | None,
    asked: svc.VideoFilter,
) -> tuple[list[VideoPublic], dict[str, str]]:
    """One page of `/content/` and its next-page headers."""
    with reader.connect() as (conn, viewer):
        filters = replace(asked, with_sourceless=viewer.is_staff)
        rows, next_cursor = _page(conn, settings, filters, limit=limit, cursor=cursor)
    headers = next_page_headers(base, next_cursor, filters, limit) if next_cursor else {}
    return videos_public(rows, settings, storage, base), headers


def _catalogue(
    request: Request,
    reader: Reader,
    settings: Settings,
    storage: Storage,
    base: str,
    category: str | None,
    processing_state: ProcessingState | None,
    search: str | None,
) -> StreamingResponse:
    # Streamed: the rows are read in batches while the body is written, so memory does not grow
    # with the catalogue. Each item is the same JSON as in a page of the list.
    cap = settings.content_max_items
    headers: dict[str, str] = {}
    with reader.connect() as (conn, viewer):
        filters = svc.VideoFilter(
            category, processing_state, search, with_sourceless=viewer.is_staff
        )
        if cap:
            next_cursor = svc.cursor_after(conn, filters, cap)
            if next_cursor:
                headers = next_page_headers(base, next_cursor, filters, None)
    videos = svc.iter_videos(
        request.app.state.sessionmaker,
        filters,
        batch=settings.content_stream_batch,
        max_items=cap,
    )
    items = (
        video_public(v, settings, storage, base).model_dump_json(by_alias=True).encode()
        for v in videos
    )
    return StreamingResponse(json_array(items), media_type="application/json", headers=headers)


@content.post("/add-favorite/", response_model=list[int])
def add_favorite(body: FavoriteToggle, user: CurrentUser, session: SessionDep) -> list[int]:
    """Toggle a favorite; answers with the user's favorite video ids."""
    require_video(session, body.video_id)
    svc.toggle_favorite(session, user.id, body.video_id)
    return favorite_ids(session, user.id)


@content.get("/favorites/", response_model=list[int])
def favorites(user: CurrentUser, session: SessionDep) -> list[int]:
    """The signed-in user's favorite video ids."""
    return favorite_ids(session, user.id)


QUALITY_HEADER = "X-Videoflix-Quality"


@content.get(
    "/video-url/{video_id}/",
    response_model=VideoUrl,
    responses={404: {"model": Detail, "description": "No such video, or nothing playable yet."}},
)
async def video_url(
    video_id: int,
    reader: ReaderDep,
    settings: SettingsDep,
    storage: StorageDep,
    response: Response,
    quality: QualityName | None = None,
) -> VideoUrl:
    """A URL of one quality as progressive MP4, valid for the whole viewing.

    A quality this video lacks is answered with the best finished one at or below it (the
    lowest when none is lower), named in `quality` and the `X-Videoflix-Quality` header; without
    `quality`, the best finished one. 404 only when nothing is playable yet.
    """
    # Async with one thread-pool call for all of the blocking work (see `deps.Reader`).
    url = await run_in_threadpool(_playback_url, reader, video_id, quality, settings, storage)
    response.headers[QUALITY_HEADER] = url.quality
    return url


def _playback_url(
    reader: Reader, video_id: int, quality: str | None, settings: Settings, storage: Storage
) -> VideoUrl:
    video = svc.playback_of(reader.first(svc.PLAYBACK, svc.playback_params(video_id)))
    if video is None:
        raise HTTPException(404, "Not found.")
    served = svc.playable_quality(video.converted_files, quality)
    if served is None:
        raise HTTPException(404, "This video is not playable yet.")
    return VideoUrl(url=_rendition_url(video, served, settings, storage), quality=served)


def require_playback(conn: Connection, video_id: int) -> svc.Playback:
    video = svc.get_playback(conn, video_id)
    if video is None:
        raise HTTPException(404, "Not found.")
    return video


def _rendition_url(
    video: svc.Playback, quality: str | None, settings: Settings, storage: Storage
) -> str:
    converted = video.converted_files
    name = quality or svc.best_rendition(converted)
    info = converted.get(name) if name else None
    if not info or not info.get("file"):
        raise HTTPException(404, "This quality is not available.")
    expires_in = playback.playback_expiry(video.duration_seconds, settings)
    return storage.url(str(info["file"]), expires_in=expires_in)


@router.get("/", response_model=VideoPage)
async def list_videos(
    reader: ReaderDep,
    settings: SettingsDep,
    storage: StorageDep,
    base: BaseUrlDep,
    limit: Limit = None,
    cursor: Cursor = None,
    category: CategoryQ = None,
    processing_state: StateQ = None,
    search: SearchQ = None,
    favorites: bool = False,
) -> VideoPage:
    """Videos newest first, filtered, with a keyset cursor for the next page."""
    # Async with one thread-pool call for all of the blocking work (see `deps.Reader`).
    return await run_in_threadpool(
        _videos_page,
        reader,
        settings,
        storage,
        base,
        limit,
        cursor,
        svc.VideoFilter(category, processing_state, search),
        favorites,
    )


def _videos_page(
    reader: Reader,
    settings: Settings,
    storage: Storage,
    base: str,
    limit: int | None,
    cursor: str | None,
    asked: svc.VideoFilter,
    favorites: bool,
) -> VideoPage:
    with reader.connect() as (conn, viewer):
        filters = replace(
            asked,
            favorites_of=viewer.id if favorites else None,
            with_sourceless=viewer.is_staff,
        )
        rows, next_cursor = _page(conn, settings, filters, limit=limit, cursor=cursor)
    return VideoPage(results=videos_public(rows, settings, storage, base), next_cursor=next_cursor)


@router.get("/categories/", response_model=Categories)
def list_categories(user: CurrentUser, session: SessionDep) -> Categories:
    """Every category in use."""
    return Categories(categories=svc.categories(session, with_sourceless=user.is_staff))


@router.get("/{video_id}/", response_model=VideoDetail)
def get_video(
    video_id: int,
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    storage: StorageDep,
    base: BaseUrlDep,
) -> VideoDetail:
    """One video with its playback links and whether it is a favorite."""
    video = require_video(session, video_id)
    if not svc.visible(video, staff=user.is_staff):
        raise HTTPException(404, "Not found.")
    return video_detail(video, svc.is_favorite(session, user.id, video.id), settings, storage, base)


def _redirect(url: str, settings: Settings) -> RedirectResponse:
    # Browsers may cache the redirect only while the URL it points to stays valid: every target
    # lives at least `presign_expiry_seconds`, so half of that (at most a minute) is safe.
    max_age = min(60, settings.presign_expiry_seconds // 2)
    return RedirectResponse(
        url, status_code=302, headers={"Cache-Control": f"private, max-age={max_age}"}
    )


@router.get(
    "/{video_id}/thumbnail/",
    status_code=302,
    response_class=RedirectResponse,
    responses={
        200: {
            "content": {VTT_TYPE: {}},
            "description": "kind=storyboard: the WebVTT index, its sprite URIs presigned.",
        },
        404: {"description": "No such thumbnail (yet)."},
        502: {"description": "kind=storyboard: the index could not be read from storage."},
    },
)
def thumbnail(
    video_id: int,
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    storage: StorageDep,
    kind: Annotated[str, Query(pattern="^(poster|sprite|storyboard)$")] = "poster",
) -> Response:
    """Redirect to the poster or the storyboard sprite; the storyboard's WebVTT index is served
    here, since its relative sprite references would not resolve against a presigned URL."""
    video = require_video(session, video_id)
    key = {
        "poster": video.thumbnail_key,
        "sprite": video.sprite_key,
        "storyboard": video.storyboard_key,
    }[kind]
    if not key:
        raise HTTPException(404, "No thumbnail yet.")
    if kind == "storyboard":
        # The sprite is fetched while scrubbing, so it lives as long as the playback URLs.
        expires_in = playback.playback_expiry(video.duration_seconds, settings)
        return _storyboard(key, expires_in, settings, storage)
    return _redirect(storage.url(key, expires_in=settings.presign_expiry_seconds), settings)


def _storyboard(vtt_key: str, expires_in: int, settings: Settings, storage: Storage) -> Response:
    return _rewritten(
        vtt_key,
        playback.rewrite_storyboard_vtt,
        VTT_TYPE,
        "storyboard",
        "No thumbnail yet.",
        expires_in,
        settings,
        storage,
    )


def _rewritten(
    key: str,
    rewrite: Callable[[str, Callable[[str], str]], str],
    media_type: str,
    what: str,
    missing: str,
    expires_in: int,
    settings: Settings,
    storage: Storage,
) -> Response:
    """A small text file from storage with its relative URIs turned into URLs valid for
    `expires_in` seconds."""
    try:
        text = storage.read(key, max_bytes=1024 * 1024)
    except StorageError as exc:
        raise HTTPException(502, f"Could not read the {what} from storage.") from exc
    if text is None:
        raise HTTPException(404, missing)
    body = rewrite(text.decode("utf-8", "replace"), _resolver(key, expires_in, storage))
    return Response(body, media_type=media_type, headers=_presigned_cache(settings))


def _resolver(base_key: str, expires_in: int, storage: Storage) -> Callable[[str], str]:
    """Relative URI in the file at `base_key` → a URL the browser can fetch (escapes stay as
    they are: they resolve to nothing of ours)."""

    def resolve(uri: str) -> str:
        key = playback.media_key(base_key, uri)
        if key is None:
            return uri
        return storage.url(key, expires_in=expires_in)

    return resolve


def _presigned_cache(settings: Settings) -> dict[str, str]:
    # Every URL inside lives `presign_expiry_seconds` longer than it must (playback_expiry), so a
    # copy cached for half of that still carries URLs that last the whole viewing.
    return {"Cache-Control": f"private, max-age={max(0, settings.presign_expiry_seconds // 2)}"}


@router.get(
    "/{video_id}/file/",
    status_code=302,
    response_class=RedirectResponse,
    responses={404: {"description": "Quality not available."}},
)
def rendition_file(
    video_id: int,
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    storage: StorageDep,
    quality: QualityName | None = None,
) -> RedirectResponse:
    """Redirect to one quality's progressive MP4 (the best one without `quality`), by a URL that
    stays valid for the whole viewing."""
    video = require_playback(session.connection(), video_id)
    return _redirect(_rendition_url(video, quality, settings, storage), settings)


@router.get(
    "/{video_id}/hls/master.m3u8",
    response_class=Response,
    responses={200: {"content": {HLS_TYPE: {}}}, 404: {"description": "Not playable yet."}},
)
def hls_master(video_id: int, user: CurrentUser, session: SessionDep) -> Response:
    """HLS master playlist over every finished quality."""
    video = require_video(session, video_id)
    if not video.converted_files:
        raise HTTPException(404, "No quality is ready yet.")
    text = playback.master_playlist(video.converted_files, lambda name: f"{name}/index.m3u8")
    return Response(text, media_type=HLS_TYPE, headers={"Cache-Control": "private, no-cache"})


@router.get(
    "/{video_id}/hls/{quality}/index.m3u8",
    response_class=Response,
    responses={200: {"content": {HLS_TYPE: {}}}, 404: {"description": "No such quality."}},
)
def hls_media(
    video_id: int,
    quality: str,
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    storage: StorageDep,
) -> Response:
    """One quality's media playlist, its media URI replaced by a URL that stays valid for the
    whole viewing (the playlist is VOD: players never reload it)."""
    video = require_video(session, video_id)
    info = (video.converted_files or {}).get(quality)
    if not info or not info.get("playlist"):
        raise HTTPException(404, "This quality is not available.")
    return _rewritten(
        str(info["playlist"]),
        playback.rewrite_media_playlist,
        HLS_TYPE,
        "playlist",
        "This quality is not available.",
        playback.playback_expiry(video.duration_seconds, settings),
        settings,
        storage,
    )
