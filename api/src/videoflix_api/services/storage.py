"""Object storage behind a small protocol: S3 here, a local filesystem in the embedded mode."""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qs, quote, urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from videoflix_api.config import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)


class StorageError(Exception):
    """Storage refused or failed an operation."""


class NotSupported(StorageError):
    """This storage cannot do that (e.g. presigned multipart uploads on a local disk)."""


class UploadSink(Protocol):
    """A streaming write of one object: `write` chunks, then `commit` (or `abort`)."""

    def write(self, data: bytes) -> None: ...
    def commit(self) -> int: ...
    def abort(self) -> None: ...


class Storage(Protocol):
    bucket: str

    def open_upload(self, key: str, content_type: str) -> UploadSink: ...
    def url(self, key: str, *, expires_in: int) -> str:
        """A URL a browser can GET the object from: presigned, or public when configured."""
        ...

    def read(self, key: str, *, max_bytes: int) -> bytes | None:
        """The object's bytes (None when it does not exist); refuses objects above max_bytes."""
        ...

    def size(self, key: str) -> int | None: ...
    def delete(self, key: str) -> None: ...
    def delete_prefix(self, prefix: str) -> int: ...
    def ping(self) -> None: ...

    # Presigned multipart uploads straight from the browser (S3 only).
    def start_multipart(self, key: str, content_type: str) -> str: ...
    def multipart_part_url(
        self, key: str, upload_id: str, part_number: int, *, expires_in: int
    ) -> str: ...
    def complete_multipart(
        self, key: str, upload_id: str, parts: list[tuple[int, str]]
    ) -> None: ...
    def abort_multipart(self, key: str, upload_id: str) -> None: ...
    def incomplete_uploads(self, prefix: str) -> list[IncompleteUpload]:
        """The multipart uploads under `prefix` that were started and never completed."""
        ...


@dataclass(frozen=True)
class IncompleteUpload:
    key: str
    upload_id: str
    initiated: datetime


@dataclass
class S3UploadSink:
    """Streams into an S3 multipart upload, one part per `part_bytes`; memory stays bounded."""

    client: S3Client
    bucket: str
    key: str
    content_type: str
    part_bytes: int
    _buffer: bytearray = field(default_factory=bytearray)
    _upload_id: str | None = None
    _parts: list[dict[str, Any]] = field(default_factory=list)
    _total: int = 0

    def write(self, data: bytes) -> None:
        self._buffer += data
        self._total += len(data)
        while len(self._buffer) >= self.part_bytes:
            self._flush(bytes(self._buffer[: self.part_bytes]))
            del self._buffer[: self.part_bytes]

    def _flush(self, chunk: bytes) -> None:
        if self._upload_id is None:
            self._upload_id = self.client.create_multipart_upload(
                Bucket=self.bucket, Key=self.key, ContentType=self.content_type
            )["UploadId"]
        number = len(self._parts) + 1
        etag = self.client.upload_part(
            Bucket=self.bucket,
            Key=self.key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=chunk,
        )["ETag"]
        self._parts.append({"PartNumber": number, "ETag": etag})

    def commit(self) -> int:
        if self._upload_id is None:
            # Small enough for one request: skip the multipart ceremony.
            self.client.put_object(
                Bucket=self.bucket,
                Key=self.key,
                Body=bytes(self._buffer),
                ContentType=self.content_type,
            )
        else:
            if self._buffer:
                self._flush(bytes(self._buffer))
            self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},  # type: ignore[typeddict-item]
            )
        self._buffer.clear()
        return self._total

    def abort(self) -> None:
        self._buffer.clear()
        if self._upload_id is not None:
            try:
                self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=self.key, UploadId=self._upload_id
                )
            except ClientError:
                log.warning("Could not abort multipart upload", extra={"key": self.key})
            self._upload_id = None


# SigV4 refuses a presigned URL valid for longer than seven days.
_SIGV4_MAX_EXPIRES = 7 * 24 * 3600
# The longest a presigned GET is signed ahead of its request (see `signing_window`).
MAX_SIGNING_WINDOW_SECONDS = 300


def signing_window(expires_in: int) -> int:
    """How many seconds of requests share one presigned GET URL.

    Every request in a window gets the URL signed at the window's start, for `expires_in` plus
    the window: identical bytes for everyone, across replicas too, so a CDN or the browser can
    cache what it fetches, and each request still gets at least `expires_in` seconds. The window
    is a tenth of the lifetime (at most five minutes), so no URL outlives its request by more than
    that share; below ten seconds every second is its own window.
    """
    return max(1, min(MAX_SIGNING_WINDOW_SECONDS, expires_in // 10))


def signed_at_and_expires(now: float, expires_in: int) -> tuple[int, int]:
    """The signing time (the start of `now`'s window) and the `X-Amz-Expires` of a GET URL that
    must stay valid `expires_in` seconds after `now` (SigV4's seven days at most)."""
    window = signing_window(expires_in)
    start = int(now) - int(now) % window
    return start, min(expires_in + window, _SIGV4_MAX_EXPIRES)


@dataclass(frozen=True)
class SigV4Presigner:
    """Presigned S3 GET URLs computed here (AWS Signature Version 4, query form), the same bytes
    botocore makes for the same signing time, at a tenth of its cost: the API answers every
    playback request with one, and botocore's generic request pipeline dominated that request.

    `prefix` is the bucket's URL up to the key (path or virtual-host style, as botocore chose it),
    `path_prefix` its path and `host` the signed Host header; all come from `from_botocore_url`.
    """

    prefix: str
    path_prefix: str
    host: str
    region: str
    access_key: str
    secret_key: str

    @classmethod
    def from_botocore_url(cls, probe_url: str, secret_key: str) -> SigV4Presigner | None:
        """The presigner matching a URL botocore presigned for the key `probe`, None when that
        URL needs more than static keys (a session token) or is not of the expected shape."""
        parts = urlsplit(probe_url)
        query = parse_qs(parts.query)
        credential = query.get("X-Amz-Credential", [""])[0].split("/")
        if (
            "X-Amz-Security-Token" in query
            or query.get("X-Amz-SignedHeaders") != ["host"]
            or len(credential) != 5
            or not parts.path.endswith("/probe")
        ):
            return None
        path_prefix = parts.path[: -len("probe")]
        return cls(
            prefix=f"{parts.scheme}://{parts.netloc}{path_prefix}",
            path_prefix=path_prefix,
            host=parts.netloc,
            region=credential[2],
            access_key=credential[0],
            secret_key=secret_key,
        )

    def url(self, key: str, *, signed_at: int, expires: int) -> str:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(signed_at))
        scope = f"{stamp[:8]}/{self.region}/s3/aws4_request"
        path = quote(key, safe="/~")
        query = (
            "X-Amz-Algorithm=AWS4-HMAC-SHA256"
            f"&X-Amz-Credential={quote(f'{self.access_key}/{scope}', safe='')}"
            f"&X-Amz-Date={stamp}&X-Amz-Expires={expires}&X-Amz-SignedHeaders=host"
        )
        canonical = (
            f"GET\n{self.path_prefix}{path}\n{query}\nhost:{self.host}\n\nhost\n"
            "UNSIGNED-PAYLOAD"
        )
        to_sign = (
            f"AWS4-HMAC-SHA256\n{stamp}\n{scope}\n"
            + hashlib.sha256(canonical.encode()).hexdigest()
        )
        signing_key = _signing_key(self.secret_key, stamp[:8], self.region)
        signature = hmac.new(signing_key, to_sign.encode(), hashlib.sha256).hexdigest()
        return f"{self.prefix}{path}?{query}&X-Amz-Signature={signature}"


@lru_cache(maxsize=8)
def _signing_key(secret_key: str, date: str, region: str) -> bytes:
    """SigV4's derived key: the same for a whole day, so derived once a day, not per URL."""
    key = f"AWS4{secret_key}".encode()
    for part in (date, region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


class S3Storage:
    def __init__(
        self,
        settings: Settings,
        client: S3Client | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.bucket = settings.s3_bucket
        self._public_base = settings.s3_public_base_url
        self._part_bytes = settings.multipart_part_bytes
        self.client: S3Client = client or boto3.client(
            "s3",
            endpoint_url=settings.s3_endpoint_url,
            aws_access_key_id=(
                settings.s3_access_key_id.get_secret_value() if settings.s3_access_key_id else None
            ),
            aws_secret_access_key=(
                settings.s3_secret_access_key.get_secret_value()
                if settings.s3_secret_access_key
                else None
            ),
            region_name=settings.s3_region,
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": settings.s3_addressing_style},
                retries={"max_attempts": 3, "mode": "standard"},
                max_pool_connections=32,
            ),
        )
        self._clock = clock
        # Static keys sign here; anything else (a role, a session token) goes through botocore,
        # which also refreshes temporary credentials.
        secret = settings.s3_secret_access_key
        self._presigner = (
            SigV4Presigner.from_botocore_url(
                self.client.generate_presigned_url(
                    "get_object", Params={"Bucket": self.bucket, "Key": "probe"}, ExpiresIn=60
                ),
                secret.get_secret_value(),
            )
            if secret is not None and settings.s3_access_key_id is not None and client is None
            else None
        )

    def open_upload(self, key: str, content_type: str) -> UploadSink:
        return S3UploadSink(self.client, self.bucket, key, content_type, self._part_bytes)

    def url(self, key: str, *, expires_in: int) -> str:
        """Valid for at least `expires_in` seconds; the same URL for every request in a signing
        window (`signed_at_and_expires`)."""
        if self._public_base:
            return f"{self._public_base}/{quote(key)}"
        signed_at, expires = signed_at_and_expires(self._clock(), expires_in)
        if self._presigner is not None:
            return self._presigner.url(key, signed_at=signed_at, expires=expires)
        return self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_in
        )

    def read(self, key: str, *, max_bytes: int) -> bytes | None:
        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _is_missing(exc):
                return None
            raise StorageError(str(exc)) from exc
        if obj["ContentLength"] > max_bytes:
            obj["Body"].close()
            raise StorageError(f"{key} is larger than {max_bytes} bytes")
        return obj["Body"].read()

    def size(self, key: str) -> int | None:
        try:
            return self.client.head_object(Bucket=self.bucket, Key=key)["ContentLength"]
        except ClientError as exc:
            if _is_missing(exc):
                return None
            raise StorageError(str(exc)) from exc

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=key)

    def delete_prefix(self, prefix: str) -> int:
        if not prefix.endswith("/"):
            raise ValueError("refusing to delete a prefix that does not end with '/'")
        deleted = 0
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
            if keys:
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys})  # type: ignore[typeddict-item]
                deleted += len(keys)
        for upload in self.incomplete_uploads(prefix):
            self.abort_multipart(upload.key, upload.upload_id)
        return deleted

    def ping(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            raise StorageError(f"bucket {self.bucket} not reachable: {exc}") from exc

    def start_multipart(self, key: str, content_type: str) -> str:
        return self.client.create_multipart_upload(
            Bucket=self.bucket, Key=key, ContentType=content_type
        )["UploadId"]

    def multipart_part_url(
        self, key: str, upload_id: str, part_number: int, *, expires_in: int
    ) -> str:
        return self.client.generate_presigned_url(
            "upload_part",
            Params={
                "Bucket": self.bucket,
                "Key": key,
                "UploadId": upload_id,
                "PartNumber": part_number,
            },
            ExpiresIn=expires_in,
        )

    def complete_multipart(self, key: str, upload_id: str, parts: list[tuple[int, str]]) -> None:
        try:
            self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in parts]},
            )
        except ClientError as exc:
            raise StorageError(_reason(exc)) from exc

    def abort_multipart(self, key: str, upload_id: str) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except ClientError as exc:
            if not _is_missing(exc):
                raise StorageError(_reason(exc)) from exc

    def incomplete_uploads(self, prefix: str) -> list[IncompleteUpload]:
        found: list[IncompleteUpload] = []
        paginator = self.client.get_paginator("list_multipart_uploads")
        try:
            # Listed whole and filtered here: MinIO matches `Prefix` against whole keys only, so
            # a folder prefix would find nothing there.
            for page in paginator.paginate(Bucket=self.bucket):
                found.extend(
                    IncompleteUpload(u["Key"], u["UploadId"], u["Initiated"])
                    for u in page.get("Uploads", [])
                    if u["Key"].startswith(prefix)
                )
        except ClientError as exc:
            raise StorageError(_reason(exc)) from exc
        return found


def _is_missing(exc: ClientError) -> bool:
    code = exc.response.get("Error", {}).get("Code", "")
    return code in ("404", "NoSuchKey", "NotFound", "NoSuchUpload")


def _reason(exc: ClientError) -> str:
    err = exc.response.get("Error", {})
    return f"{err.get('Code', 'Error')}: {err.get('Message', '')}".strip()


def make_storage(settings: Settings) -> Storage:
    return S3Storage(settings)
