"""Read the box layout of our fragmented MP4 and write its byte-range HLS media playlist.

FFmpeg's HLS muxer cannot write the global sidx a progressive <video> needs for seeking, so the
MP4 muxer writes the file and the playlist is derived from its boxes: the init segment is
ftyp+moov, each media segment one moof+mdat pair, durations from the sidx.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO


class Mp4LayoutError(Exception):
    """The file is not the fragmented MP4 layout the playlist needs."""


@dataclass(frozen=True)
class Box:
    type: str
    offset: int
    size: int


def top_level_boxes(stream: BinaryIO) -> list[Box]:
    """Top-level boxes, reading only their headers (files can be gigabytes)."""
    boxes: list[Box] = []
    stream.seek(0, 2)
    end = stream.tell()
    offset = 0
    while offset < end:
        stream.seek(offset)
        header = stream.read(8)
        if len(header) < 8:
            raise Mp4LayoutError(f"truncated box header at {offset}")
        size, kind = struct.unpack(">I4s", header)
        if size == 1:
            size = struct.unpack(">Q", stream.read(8))[0]
        elif size == 0:
            size = end - offset
        if size < 8 or offset + size > end:
            raise Mp4LayoutError(f"box {kind!r} at {offset} has a bad size {size}")
        boxes.append(Box(kind.decode("latin-1"), offset, size))
        offset += size
    return boxes


@dataclass(frozen=True)
class SegmentIndex:
    timescale: int
    durations: list[int]  # in timescale units, one per referenced fragment
    sizes: list[int]


def parse_sidx(payload: bytes) -> SegmentIndex:
    """Parse a sidx box body (after the 8-byte box header), ISO/IEC 14496-12 8.16.3."""
    version = payload[0]
    timescale = struct.unpack_from(">I", payload, 8)[0]
    pos = 12 + (8 if version == 0 else 16)  # earliest_presentation_time + first_offset
    count = struct.unpack_from(">H", payload, pos + 2)[0]
    pos += 4
    durations, sizes = [], []
    for _ in range(count):
        ref, duration, _sap = struct.unpack_from(">III", payload, pos)
        if ref >> 31:
            raise Mp4LayoutError("hierarchical sidx is not supported")
        sizes.append(ref & 0x7FFFFFFF)
        durations.append(duration)
        pos += 12
    return SegmentIndex(timescale, durations, sizes)


@dataclass(frozen=True)
class Layout:
    init_size: int  # ftyp + moov at offset 0
    segments: list[tuple[int, int, float]]  # (offset, length, seconds)


def read_layout(path: Path) -> Layout:
    with path.open("rb") as stream:
        boxes = top_level_boxes(stream)
        kinds = [b.type for b in boxes]
        if kinds[:2] != ["ftyp", "moov"]:
            raise Mp4LayoutError(f"expected ftyp, moov at the start, found {kinds[:3]}")
        sidx = next((b for b in boxes if b.type == "sidx"), None)
        if sidx is None:
            raise Mp4LayoutError("no sidx box")
        stream.seek(sidx.offset + 8)
        index = parse_sidx(stream.read(sidx.size - 8))
    fragments: list[tuple[int, int]] = []
    for i, box in enumerate(boxes):
        if box.type == "moof":
            if i + 1 >= len(boxes) or boxes[i + 1].type != "mdat":
                raise Mp4LayoutError(f"moof at {box.offset} is not followed by mdat")
            fragments.append((box.offset, box.size + boxes[i + 1].size))
    if [size for _, size in fragments] != index.sizes:
        raise Mp4LayoutError("sidx does not describe the fragments in the file")
    init_size = boxes[0].size + boxes[1].size
    return Layout(
        init_size,
        [
            (offset, size, duration / index.timescale)
            for (offset, size), duration in zip(fragments, index.durations, strict=True)
        ],
    )


def hls_playlist(layout: Layout, file_name: str) -> str:
    """A VOD HLS media playlist (version 7: fMP4) of byte ranges over one file."""
    target = max((math.ceil(seconds) for _, _, seconds in layout.segments), default=1)
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:7",
        f"#EXT-X-TARGETDURATION:{max(1, target)}",
        "#EXT-X-MEDIA-SEQUENCE:0",
        "#EXT-X-PLAYLIST-TYPE:VOD",
        "#EXT-X-INDEPENDENT-SEGMENTS",
        f'#EXT-X-MAP:URI="{file_name}",BYTERANGE="{layout.init_size}@0"',
    ]
    for offset, size, seconds in layout.segments:
        lines += [f"#EXTINF:{seconds:.6f},", f"#EXT-X-BYTERANGE:{size}@{offset}", file_name]
    lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"
