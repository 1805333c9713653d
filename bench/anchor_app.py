"""The anchor of `bench/api.py`: our two hot endpoints as a minimal FastAPI app would write them.

    uvicorn bench.anchor_app:create_app --factory   (bench/api.py starts it; configured by env)

What the bare framework costs for the same work as ours: a pyjwt check of the same Bearer token,
the same 50 rows and fields read through psycopg, a pydantic response model; the playback URL
reads the same row and presigns with boto3 for the same lifetime. No ORM, no middleware, no
metrics, no access log: whatever our API costs above this is ours to justify.

Environment: ANCHOR_DATABASE_URL (libpq form), ANCHOR_SECRET (the JWT key), ANCHOR_BASE_URL,
ANCHOR_S3_ENDPOINT, ANCHOR_S3_KEY, ANCHOR_S3_SECRET, ANCHOR_S3_BUCKET.
"""

# No `from __future__ import annotations`: FastAPI must see the closures in the route signatures.
import base64
import json
import math
import os
import queue
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any

import boto3
import jwt
import psycopg
from botocore.config import Config
from fastapi import Depends, FastAPI, Header, HTTPException, Query, Response
from pydantic import BaseModel, ConfigDict, Field

COLUMNS = (
    "id, title, description, category, created_at, thumbnail_key, converted_files,"
    " processing_state, processing_error, progress, duration_seconds"
)


class Rendition(BaseModel):
    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    width: int | None = None
    height: int | None = None
    bitrate: int | None = None
    bytes: int | None = None
    duration_seconds: float | None = Field(default=None, alias="durationSeconds")


class VideoOut(BaseModel):
    id: int
    title: str
    description: str
    category: str
    created_at: datetime
    image_file: str | None
    video_file: str | None
    converted_files: dict[str, Rendition]
    processing_state: str
    processing_error: str | None
    progress: int
    duration_seconds: float | None


class UrlOut(BaseModel):
    url: str
    quality: str


class Pool:
    """A fixed set of psycopg connections handed out to the worker threads."""

    def __init__(self, dsn: str, size: int):
        self._free: queue.Queue[psycopg.Connection[Any]] = queue.Queue()
        for _ in range(size):
            self._free.put(psycopg.connect(dsn, autocommit=True))

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        conn = self._free.get()
        try:
            yield conn
        finally:
            self._free.put(conn)


def create_app() -> FastAPI:
    env = os.environ
    secret, base = env["ANCHOR_SECRET"], env["ANCHOR_BASE_URL"]
    bucket = env["ANCHOR_S3_BUCKET"]
    pool = Pool(env["ANCHOR_DATABASE_URL"], size=10)
    s3 = boto3.client(
        "s3",
        endpoint_url=env["ANCHOR_S3_ENDPOINT"],
        aws_access_key_id=env["ANCHOR_S3_KEY"],
        aws_secret_access_key=env["ANCHOR_S3_SECRET"],
        region_name="us-east-1",
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )
    app = FastAPI()

    def user_id(authorization: Annotated[str, Header()] = "") -> int:
        try:
            claims = jwt.decode(authorization.removeprefix("Bearer "), secret, algorithms=["HS256"])
            return int(claims["sub"])
        except (jwt.PyJWTError, KeyError, ValueError) as exc:
            raise HTTPException(401, "Given token not valid for any token type") from exc

    def out(row: tuple[Any, ...]) -> VideoOut:
        vid, title, desc, cat, created, thumb, files, state, error, progress, duration = row
        best = max(files, key=lambda n: files[n].get("height") or 0) if files else None
        return VideoOut(
            id=vid,
            title=title,
            description=desc,
            category=cat,
            created_at=created,
            image_file=f"{base}/videos/{vid}/thumbnail/" if thumb else None,
            video_file=f"{base}/videos/{vid}/file/" if best else None,
            converted_files={n: Rendition.model_validate(i) for n, i in files.items()},
            processing_state=state,
            processing_error=error,
            progress=progress,
            duration_seconds=duration,
        )

    @app.get("/content/", response_model=list[VideoOut])
    def content(
        response: Response,
        user: Annotated[int, Depends(user_id)],
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    ) -> list[VideoOut]:
        with pool.connection() as conn:
            rows = conn.execute(
                f"SELECT {COLUMNS} FROM videos WHERE source_key IS NOT NULL"
                " ORDER BY created_at DESC, id DESC LIMIT %s",
                (limit + 1,),
            ).fetchall()
        if len(rows) > limit:
            last = rows[limit - 1]
            raw = json.dumps([last[4].isoformat(), last[0]], separators=(",", ":")).encode()
            response.headers["X-Next-Cursor"] = base64.urlsafe_b64encode(raw).decode()
        return [out(row) for row in rows[:limit]]

    @app.get("/content/video-url/{video_id}/", response_model=UrlOut)
    def video_url(
        video_id: int,
        user: Annotated[int, Depends(user_id)],
        quality: Annotated[str, Query(pattern=r"^[1-9][0-9]{1,3}p$")],
    ) -> UrlOut:
        with pool.connection() as conn:
            row = conn.execute(
                "SELECT converted_files, duration_seconds FROM videos WHERE id = %s", (video_id,)
            ).fetchone()
        if row is None or quality not in (row[0] or {}):
            raise HTTPException(404, "Not found.")
        files, duration = row
        expires = min(math.ceil(duration or 0) + 300 + 4 * 3600, 7 * 24 * 3600)
        url = s3.generate_presigned_url(
            "get_object",
            Params={"Bucket": bucket, "Key": files[quality]["file"]},
            ExpiresIn=expires,
        )
        return UrlOut(url=url, quality=quality)

    return app
