"""Request and response bodies (`XCreate` / `XUpdate` / `XPublic`) as OpenAPI shows them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from videoflix_core.states import ProcessingState

Email = Annotated[str, StringConstraints(strip_whitespace=True, max_length=254)]
Password = Annotated[str, StringConstraints(max_length=1024)]


class Detail(BaseModel):
    detail: str


class EmailExists(BaseModel):
    exists: bool


class RegisterCreate(BaseModel):
    email: Email
    password: Password
    confirm_password: Password


class RegisterPublic(BaseModel):
    email: str


class LoginRequest(BaseModel):
    email: Email
    password: Password
    remember: bool = False


class UserPublic(BaseModel):
    id: int
    email: str
    is_staff: bool
    favorite_videos: list[int]


class ForgotPasswordRequest(BaseModel):
    email: Email


class ResetPasswordRequest(BaseModel):
    uid: int
    token: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    new_password: Password


class RenditionInfo(BaseModel):
    """One finished quality of a video."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    width: int | None = None
    height: int | None = None
    bitrate: int | None = None
    bytes: int | None = None
    duration_seconds: float | None = Field(default=None, alias="durationSeconds")


class VideoPublic(BaseModel):
    """A video as the frontend's list shows it."""

    id: int
    title: str
    description: str
    category: str
    created_at: datetime
    image_file: str | None = Field(description="Absolute URL of the poster thumbnail (redirects).")
    video_file: str | None = Field(
        description="Absolute URL of the best finished quality as progressive MP4 (redirects)."
    )
    converted_files: dict[str, RenditionInfo]
    processing_state: ProcessingState
    processing_error: str | None
    progress: int = Field(ge=0, le=100)
    duration_seconds: float | None


class VideoDetail(VideoPublic):
    is_favorite: bool
    hls_url: str | None = Field(description="Master playlist URL once a quality exists.")
    has_source: bool
    transcode_generation: int


class VideoPage(BaseModel):
    results: list[VideoPublic]
    next_cursor: str | None = Field(description="Pass as `cursor` to get the next page.")


Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Description = Annotated[str, StringConstraints(max_length=5000)]
Category = Annotated[str, StringConstraints(strip_whitespace=True, max_length=64)]


class VideoCreate(BaseModel):
    title: Title
    description: Description = ""
    category: Category = ""


class VideoUpdate(BaseModel):
    title: Title | None = None
    description: Description | None = None
    category: Category | None = None


class FavoriteToggle(BaseModel):
    video_id: int


class VideoUrl(BaseModel):
    url: str = Field(description="Presigned (or public) URL of a progressive MP4.")
    quality: str = Field(
        description="The quality served: the one asked for, or the best finished one at or "
        "below it (the lowest when none is lower). Also in the `X-Videoflix-Quality` header."
    )


class Categories(BaseModel):
    categories: list[str]


# A bare MIME type (RFC 6838 names) or empty.
MIME_TYPE = r"^([A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126})?$"


class MultipartStart(BaseModel):
    filename: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    size: int = Field(gt=0, description="Total bytes of the file to upload.")
    # A bare MIME type (RFC 6838 names) or empty, as browsers report unknown types: it becomes
    # the object's Content-Type header, where control characters make storage refuse it.
    content_type: Annotated[str, StringConstraints(pattern=MIME_TYPE)] = "application/octet-stream"


class MultipartStarted(BaseModel):
    upload_id: str
    key: str
    part_size: int
    part_count: int


class MultipartPartsRequest(BaseModel):
    part_numbers: list[Annotated[int, Field(ge=1, le=10_000)]] = Field(
        min_length=1, max_length=1000
    )


class PartUrl(BaseModel):
    part_number: int
    url: str


class MultipartPartUrls(BaseModel):
    urls: list[PartUrl]
    expires_in: int


class CompletedPart(BaseModel):
    part_number: int = Field(ge=1, le=10_000)
    etag: Annotated[str, StringConstraints(min_length=1, max_length=200)]


class MultipartComplete(BaseModel):
    parts: list[CompletedPart] = Field(min_length=1, max_length=10_000)
