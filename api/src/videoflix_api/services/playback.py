"""HLS playlists: a master over the finished qualities, media playlists with presigned media URIs.

Each rendition is one fragmented MP4 addressed by byte ranges, so a media playlist names one file
(in `#EXT-X-MAP:URI=` and on every segment line); rewriting means swapping that URI for a URL the
player can fetch from a private bucket.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from videoflix_api.config import Settings

# S3 Signature Version 4 refuses presigned URLs valid for longer than seven days.
SIGV4_MAX_EXPIRY_SECONDS = 7 * 24 * 3600


def playback_expiry(duration_seconds: float | None, settings: Settings) -> int:
    """Seconds a playback URL (progressive MP4, HLS media URI, embedded `/media/` link) stays valid.

    Players fetch such a URL for as long as someone watches (range requests on every seek and
    refill) and never ask the API for a fresh one: the media playlists are VOD, and Chromium sends
    its later range requests to where a redirect pointed, so redirecting per request would not
    help either. The URL must therefore outlive the viewing: the video's length, plus the base
    expiry as start-up margin, plus the pauses a viewer may take. A video of unknown length gets
    the longest lifetime allowed; nothing ever exceeds SigV4's seven days.
    """
    cap = min(settings.playback_expiry_max_seconds, SIGV4_MAX_EXPIRY_SECONDS)
    if duration_seconds is None or not math.isfinite(duration_seconds) or duration_seconds <= 0:
        return cap
    wanted = (
        math.ceil(duration_seconds)
        + settings.presign_expiry_seconds
        + settings.playback_pause_seconds
    )
    return min(wanted, cap)

_URI_ATTR = re.compile(r'URI="([^"]*)"')


# RFC 6381 codec strings are dotted alphanumerics; anything else (a quote, a newline) would break
# out of the quoted attribute, so it is left out rather than written.
_CODECS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+-]*(,[A-Za-z0-9][A-Za-z0-9.+-]*)*$")


def _positive(value: Any) -> int | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 1:
        return int(value)
    return None


def _average_bandwidth(info: Mapping[str, Any]) -> int:
    bitrate = _positive(info.get("bitrate"))
    if bitrate is not None:
        return bitrate
    size, duration = _positive(info.get("bytes")), info.get("durationSeconds")
    if size is not None and isinstance(duration, int | float) and duration > 0:
        return int(size * 8 / duration)
    return 1


def _bandwidth(info: Mapping[str, Any]) -> int:
    """HLS `BANDWIDTH` is the peak segment bit rate; the average stands in when it is unknown
    (renditions transcoded before the transcoder reported peaks). Never below the average: the
    average counts the init segment too, and RFC 8216 wants BANDWIDTH >= AVERAGE-BANDWIDTH."""
    return max(_positive(info.get("peakBitrate")) or 0, _average_bandwidth(info))


def stream_inf(name: str, info: Mapping[str, Any]) -> str:
    """The `#EXT-X-STREAM-INF` line of one rendition (RFC 8216 §4.3.4.2)."""
    attrs = [f"BANDWIDTH={_bandwidth(info)}", f"AVERAGE-BANDWIDTH={_average_bandwidth(info)}"]
    codecs = info.get("codecs")
    if isinstance(codecs, str) and _CODECS.match(codecs):
        attrs.append(f'CODECS="{codecs}"')
    width, height = _positive(info.get("width")), _positive(info.get("height"))
    if width and height:
        attrs.append(f"RESOLUTION={width}x{height}")
    attrs.append(f'NAME="{name}"')
    return "#EXT-X-STREAM-INF:" + ",".join(attrs)


def master_playlist(
    converted: Mapping[str, Mapping[str, Any]], uri_for: Callable[[str], str]
) -> str:
    """The master playlist over every finished rendition, lowest bandwidth first."""
    lines = ["#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for name, info in sorted(converted.items(), key=lambda kv: (_bandwidth(kv[1]), kv[0])):
        lines += [stream_inf(name, info), uri_for(name)]
    return "\n".join(lines) + "\n"


def rewrite_media_playlist(text: str, resolve: Callable[[str], str]) -> str:
    """Replace every media URI (segment lines and `URI="…"` attributes) by `resolve(uri)`.

    `resolve` is called once per distinct URI, so a byte-range playlist over one file costs one
    presign however many segments it lists.
    """
    cache: dict[str, str] = {}

    def sub(uri: str) -> str:
        if uri not in cache:
            cache[uri] = resolve(uri)
        return cache[uri]

    out = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            out.append(line)
        elif stripped.startswith("#"):
            out.append(_URI_ATTR.sub(lambda m: f'URI="{sub(m.group(1))}"', line))
        else:
            out.append(sub(stripped))
    return "\n".join(out) + "\n"


def media_key(playlist_key: str, uri: str) -> str | None:
    """The key a relative URI in the playlist at `playlist_key` names (None if it escapes)."""
    if "://" in uri or uri.startswith("/") or ".." in uri.split("/"):
        return None
    base = playlist_key.rsplit("/", 1)[0]
    return f"{base}/{uri.split('?', 1)[0]}"


def rewrite_storyboard_vtt(text: str, resolve: Callable[[str], str]) -> str:
    """Replace the image reference of every cue (`sprite.jpg#xywh=x,y,w,h`) by `resolve(uri)`,
    keeping the `#xywh=` fragment.

    The transcoder writes the references relative to the VTT; a player resolves them against the
    URL it fetched the VTT from, which for a private bucket gets it nothing. Only cue payloads are
    touched (the lines after a `-->` timing line up to the blank line ending the cue); the header,
    cue identifiers and NOTE blocks pass through. `resolve` runs once per distinct URI.
    """
    cache: dict[str, str] = {}
    out = []
    in_payload = False
    for line in text.lstrip("\ufeff").splitlines():
        stripped = line.strip()
        if not stripped:
            in_payload = False
            out.append("")
        elif in_payload:
            uri, hash_, fragment = stripped.partition("#")
            if uri not in cache:
                cache[uri] = resolve(uri)
            out.append(cache[uri] + hash_ + fragment)
        else:
            in_payload = "-->" in stripped and not stripped.startswith(("NOTE", "WEBVTT"))
            out.append(line)
    return "\n".join(out) + "\n"
