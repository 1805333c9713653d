"""Processing states of a video, as the frontend contract names them."""

from enum import StrEnum


class ProcessingState(StrEnum):
    """Where a video is in its transcode pipeline.

    `pending`: accepted, nothing started; `processing`: probing or encoding (maybe already
    playable); `ready`: every planned rendition exists; `error`: a required step failed for good
    (see the reason).
    """

    PENDING = "pending"
    PROCESSING = "processing"
    READY = "ready"
    ERROR = "error"

    @property
    def is_final(self) -> bool:
        return self in (ProcessingState.READY, ProcessingState.ERROR)
