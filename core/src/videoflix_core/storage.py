"""Object storage layout: all objects of one video live under one prefix; cleanup is one listing.

Keys are relative to the bucket:
    videos/<video-id>/source/<original-name>
    videos/<video-id>/<rendition>/video.mp4 and index.m3u8
    videos/<video-id>/thumbnails/poster.jpg, sprite.jpg, storyboard.vtt
    videos/<video-id>/results/<generation>-<spec-hash>/<step>.json   (each finished step's result)
    videos/<video-id>/chunks/<generation>-<spec-hash>/<rung>/<index>.mp4, …/audio/<kbps>k.mp4
        (intermediates of chunked renditions, deleted once the transcode is over)
"""

import re
import unicodedata

RENDITION_FILE = "video.mp4"
RENDITION_PLAYLIST = "index.m3u8"
POSTER_FILE = "poster.jpg"
SPRITE_FILE = "sprite.jpg"
STORYBOARD_FILE = "storyboard.vtt"

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_NAME = 120


def video_prefix(video_id: int) -> str:
    """The prefix that holds everything stored for one video (ends with a slash)."""
    if video_id < 1:
        raise ValueError(f"video ids are positive integers, got {video_id}")
    return f"videos/{video_id}/"


def safe_filename(original: str) -> str:
    """A storage-safe version of an uploaded file name: ASCII, no path parts, bounded length.

    Uploaded names come from browsers and can hold anything (paths, control characters, emoji);
    the key must stay a single path segment that every S3 implementation accepts.
    """
    name = original.replace("\\", "/").rsplit("/", 1)[-1]
    name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    name = _UNSAFE.sub("-", name).strip(".-")
    if len(name) > _MAX_NAME:
        stem, dot, ext = name.rpartition(".")
        keep_ext = dot and len(ext) <= 10
        name = (stem[: _MAX_NAME - len(ext) - 1] + dot + ext) if keep_ext else name[:_MAX_NAME]
    return name or "source"


def source_key(video_id: int, original_name: str) -> str:
    return f"{video_prefix(video_id)}source/{safe_filename(original_name)}"


def rendition_prefix(video_id: int, rendition: str) -> str:
    return f"{video_prefix(video_id)}{rendition}/"


def rendition_file_key(video_id: int, rendition: str) -> str:
    return rendition_prefix(video_id, rendition) + RENDITION_FILE


def rendition_playlist_key(video_id: int, rendition: str) -> str:
    return rendition_prefix(video_id, rendition) + RENDITION_PLAYLIST


def thumbnails_prefix(video_id: int) -> str:
    return f"{video_prefix(video_id)}thumbnails/"


def poster_key(video_id: int) -> str:
    return thumbnails_prefix(video_id) + POSTER_FILE


def results_prefix(video_id: int) -> str:
    return f"{video_prefix(video_id)}results/"


def step_result_key(video_id: int, generation: int, spec_hash: str, step: str) -> str:
    """Where a step stores its result JSON once its outputs are published (the transcoder's
    `--result-to`), so the result outlives the Job's pod: one object per video, generation, spec
    and step (`probe`, `thumbnail`, `ladder`, `rendition/<name>` becomes `rendition-<name>.json`).

    The spec hash keeps a result of another ladder or source of the same generation (a hand-edited
    CR) from ever being taken for this one's.
    """
    if generation < 0:
        raise ValueError(f"generations are not negative, got {generation}")
    if not spec_hash or not re.fullmatch(r"[A-Za-z0-9]+", spec_hash):
        raise ValueError(f"bad spec hash {spec_hash!r}")
    name = step.replace("/", "-")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}", name):
        raise ValueError(f"bad step name {step!r}")
    return f"{results_prefix(video_id)}{generation}-{spec_hash}/{name}.json"


def chunks_prefix(video_id: int) -> str:
    """Every chunked run's intermediates of one video (ends with a slash)."""
    return f"{video_prefix(video_id)}chunks/"


def chunk_work(generation: int, spec_hash: str) -> str:
    """The transcoder's `--work` folder (relative to the video's prefix) of one generation and
    spec: a superseded run's late pods write beside, never over, the current run's chunks."""
    if generation < 0:
        raise ValueError(f"generations are not negative, got {generation}")
    if not spec_hash or not re.fullmatch(r"[A-Za-z0-9]+", spec_hash):
        raise ValueError(f"bad spec hash {spec_hash!r}")
    return f"chunks/{generation}-{spec_hash}"
