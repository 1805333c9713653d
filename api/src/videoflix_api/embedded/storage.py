"""Local-filesystem storage implementing the API's `Storage` protocol (services/storage.py).

Keys map one to one onto paths under one root folder, so the transcoder subprocesses read and write
the very same files by relative path. Browsers get signed `/media/...` URLs instead of presigned S3
URLs; the files are served with range requests by `media.media_router`.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from videoflix_api.embedded.media import UrlSigner, key_path, validate_key
from videoflix_api.services.storage import IncompleteUpload, NotSupported, StorageError

log = logging.getLogger(__name__)

LOCAL_BUCKET = "local"


class LocalUploadSink:
    """Streams into a temporary file next to the target; `commit` renames it into place atomically,
    so a reader never sees half a source."""

    def __init__(self, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
        self._file = os.fdopen(fd, "wb")
        self._tmp = Path(tmp)
        self._target = target
        self._total = 0

    def write(self, data: bytes) -> None:
        self._file.write(data)
        self._total += len(data)

    def commit(self) -> int:
        self._file.close()
        os.chmod(self._tmp, 0o644)
        os.replace(self._tmp, self._target)
        return self._total

    def abort(self) -> None:
        self._file.close()
        self._tmp.unlink(missing_ok=True)


class LocalStorage:
    """The embedded mode's object store: a folder, with HMAC-signed URLs for browsers."""

    def __init__(self, root: Path, signer: UrlSigner, bucket: str = LOCAL_BUCKET) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.signer = signer
        self.bucket = bucket

    def path(self, key: str) -> Path:
        """The file of `key` (or folder of a prefix); refuses keys that leave the root."""
        return key_path(self.root, key)

    def key_of(self, path_or_key: str) -> str:
        """A storage key for what the transcoder reported: it runs with the root as working
        directory and gets relative paths, so its "paths" are keys already; absolute paths under
        the root are accepted too."""
        candidate = Path(path_or_key)
        if candidate.is_absolute():
            candidate = candidate.resolve().relative_to(self.root)
        return validate_key(candidate.as_posix())

    def open_upload(self, key: str, content_type: str) -> LocalUploadSink:
        return LocalUploadSink(self.path(key))

    def url(self, key: str, *, expires_in: int) -> str:
        return self.signer.url(key, expires_in)

    def read(self, key: str, *, max_bytes: int) -> bytes | None:
        path = self.path(key)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return None
        if size > max_bytes:
            raise StorageError(f"{key} is larger than {max_bytes} bytes")
        return path.read_bytes()

    def size(self, key: str) -> int | None:
        try:
            path = self.path(key)
            return path.stat().st_size if path.is_file() else None
        except FileNotFoundError:
            return None

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def delete_prefix(self, prefix: str) -> int:
        if not prefix.endswith("/"):
            raise ValueError("refusing to delete a prefix that does not end with '/'")
        folder = self.path(prefix)
        if not folder.is_dir():
            return 0
        count = sum(1 for p in folder.rglob("*") if p.is_file())
        shutil.rmtree(folder)
        return count

    def ping(self) -> None:
        if not self.root.is_dir() or not os.access(self.root, os.W_OK):
            raise StorageError(f"storage folder {self.root} is missing or not writable")

    # Browser-direct multipart uploads are an S3 feature; the embedded mode takes uploads through
    # the API's streaming endpoint instead (no size where that matters on one machine).
    def start_multipart(self, key: str, content_type: str) -> str:
        raise NotSupported("direct multipart uploads need S3; upload through the API instead")

    def multipart_part_url(
        self, key: str, upload_id: str, part_number: int, *, expires_in: int
    ) -> str:
        raise NotSupported("direct multipart uploads need S3; upload through the API instead")

    def complete_multipart(self, key: str, upload_id: str, parts: list[tuple[int, str]]) -> None:
        raise NotSupported("direct multipart uploads need S3; upload through the API instead")

    def abort_multipart(self, key: str, upload_id: str) -> None:
        raise NotSupported("direct multipart uploads need S3; upload through the API instead")

    def incomplete_uploads(self, prefix: str) -> list[IncompleteUpload]:
        return []  # no multipart uploads are ever started here
