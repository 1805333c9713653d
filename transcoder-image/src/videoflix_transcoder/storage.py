"""Sources and outputs: `s3://bucket/key` through boto3, or local paths (embedded mode).

Transfers stream through files on the scratch disk (boto3 download_file/upload_file do
multipart in chunks), so a video is never held in memory. Outputs are published only after
FFmpeg succeeded; a failure while publishing removes what was already published, so a step's
outputs are complete or absent.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from videoflix_transcoder.errors import BadInput, TransientError

log = logging.getLogger(__name__)

CONTENT_TYPES = {
    ".m3u8": "application/vnd.apple.mpegurl",
    ".m4s": "video/iso.segment",
    ".mp4": "video/mp4",
    ".jpg": "image/jpeg",
    ".vtt": "text/vtt",
    ".json": "application/json",
}


def content_type(name: str) -> str:
    return CONTENT_TYPES.get(Path(name).suffix.lower(), "application/octet-stream")


@dataclass(frozen=True)
class Location:
    """An s3 object/prefix (bucket set) or a local path (bucket None)."""

    bucket: str | None
    key: str

    def join(self, relative: str) -> Location:
        if self.bucket is None:
            return Location(None, str(Path(self.key) / relative))
        return Location(self.bucket, self.key + relative)


def parse_uri(uri: str, *, prefix: bool = False) -> Location:
    """`s3://bucket/key` or a local path; a prefix always ends with '/' on S3."""
    if uri.startswith("s3://"):
        bucket, _, key = uri[len("s3://"):].partition("/")
        if not bucket or (not key and not prefix):
            raise BadInput(f"bad S3 URI {uri!r}: expected s3://bucket/key")
        if prefix and key and not key.endswith("/"):
            key += "/"
        return Location(bucket, key)
    if "://" in uri:
        raise BadInput(f"unsupported URI {uri!r}: use s3://bucket/key or a local path")
    if not uri:
        raise BadInput("empty path")
    return Location(None, uri)


def s3_client(env: Mapping[str, str]) -> Any:
    import boto3  # deferred: local mode needs no boto3 import cost
    from botocore.config import Config

    endpoint = env.get("VIDEOFLIX_S3_ENDPOINT_URL") or None
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=env.get("VIDEOFLIX_S3_ACCESS_KEY_ID") or None,
        aws_secret_access_key=env.get("VIDEOFLIX_S3_SECRET_ACCESS_KEY") or None,
        region_name=env.get("VIDEOFLIX_S3_REGION") or "us-east-1",
        config=Config(
            signature_version="s3v4",
            # S3-compatible servers (MinIO) want path-style; AWS itself picks its own.
            s3={"addressing_style": "path" if endpoint else "auto"},
            retries={"max_attempts": 5, "mode": "standard"},
        ),
    )


class Storage:
    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env
        self._client: Any = None

    @property
    def s3(self) -> Any:
        if self._client is None:
            self._client = s3_client(self._env)
        return self._client

    def fetch(self, source: Location, scratch: Path) -> Path:
        """A local path to the source: itself in local mode, a scratch download from S3."""
        if source.bucket is None:
            path = Path(source.key)
            if not path.is_file():
                raise BadInput(f"source not found: {source.key}")
            return path
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError

        target = scratch / "source"
        try:
            self.s3.download_file(source.bucket, source.key, str(target))
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in {"404", "NoSuchKey", "NoSuchBucket"}:
                raise BadInput(f"source not found: s3://{source.bucket}/{source.key}") from exc
            raise TransientError(f"downloading the source failed: {exc}") from exc
        except (BotoCoreError, Boto3Error) as exc:
            raise TransientError(f"downloading the source failed: {exc}") from exc
        return target

    def publish(self, files: list[tuple[Path, str]], dest: Location) -> list[str]:
        """Put each (local file, relative name) under dest, in order; return the keys.

        Callers list playlists last, so a visible playlist implies its media is there.
        """
        done: list[Location] = []
        try:
            for path, relative in files:
                target = dest.join(relative)
                if target.bucket is None:
                    _place_local(path, Path(target.key))
                else:
                    self._upload(path, target)
                done.append(target)
        except BaseException:
            # Also on Terminated: a half-published step must not look finished.
            self.remove(done)
            raise
        return [loc.key for loc in done]

    def put_result(self, text: str, target: Location, scratch: Path) -> None:
        """Store the step's result JSON at `target` (a whole object, so it is there or not).

        Called after the outputs are published: a stored result means they are complete.
        """
        path = scratch / "result.json"
        path.write_text(text)
        if target.bucket is None:
            _place_local(path, Path(target.key))
        else:
            self._upload(path, target)

    def _upload(self, path: Path, target: Location) -> None:
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.s3.upload_file(
                str(path), target.bucket, target.key,
                ExtraArgs={"ContentType": content_type(target.key)},
            )
        except (ClientError, BotoCoreError, Boto3Error) as exc:
            raise TransientError(f"uploading {target.key} failed: {exc}") from exc

    def remove(self, locations: list[Location]) -> None:
        for loc in locations:
            try:
                if loc.bucket is None:
                    Path(loc.key).unlink(missing_ok=True)
                else:
                    self.s3.delete_object(Bucket=loc.bucket, Key=loc.key)
            except Exception:  # best effort: the original error is the one to report
                log.warning("Could not remove partial output %s", loc.key, exc_info=True)


def _place_local(path: Path, target: Path) -> None:
    """Copy into the target's folder under a temporary name, then rename: atomic per file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(fd)
    try:
        shutil.copyfile(path, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
