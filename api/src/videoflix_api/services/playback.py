"""HLS playlists: a master over the finished qualities, media playlists with presigned media URIs.

Each rendition is one fragmented MP4 addressed by byte ranges, so a media playlist names one file
(in `#EXT-X-MAP:URI=` and on every segment line); rewriting means swapping that URI for a URL the
player can fetch from a private bucket.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

_URI_ATTR = re.compile(r'URI="([^"]*)"')


def _bandwidth(info: Mapping[str, Any]) -> int:
    bitrate = info.get("bitrate")
    if isinstance(bitrate, int | float) and bitrate > 0:
        return int(bitrate)
    size, duration = info.get("bytes"), info.get("durationSeconds")
    if isinstance(size, int | float) and isinstance(duration, int | float) and duration > 0:
        return int(size * 8 / duration)
    return 1


def master_playlist(
    converted: Mapping[str, Mapping[str, Any]], uri_for: Callable[[str], str]
) -> str:
    """The master playlist over every finished rendition, lowest bandwidth first."""
    lines = ["#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for name, info in sorted(converted.items(), key=lambda kv: (_bandwidth(kv[1]), kv[0])):
        attrs = [f"BANDWIDTH={_bandwidth(info)}"]
        width, height = info.get("width"), info.get("height")
        if width and height:
            attrs.append(f"RESOLUTION={int(width)}x{int(height)}")
        attrs.append(f'NAME="{name}"')
        lines += ["#EXT-X-STREAM-INF:" + ",".join(attrs), uri_for(name)]
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
