"""Read and write the fragments of our CMAF files sample by sample: the chunked assembly.

`mp4.py` reads the top-level layout; this module goes one level down (moov's tracks, each
moof's traf/tfhd/tfdt/trun) so that chunk files and the audio file can be joined into the one
published file without re-encoding: ftyp, moov (video trak, audio trak, mvex), one global sidx
per track, then one moof+mdat per 2 s fragment holding both tracks, exactly as FFmpeg's mp4
muxer writes an unchunked rendition (the tfhd defaults and trun flags follow FFmpeg's own
rules, so re-writing an unchunked file from its own samples gives it back byte for byte).

Sample data is never held in memory: samples point into their source file, and the writer
copies byte ranges.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

from videoflix_transcoder.mp4 import Box, Mp4LayoutError, top_level_boxes

# ISO/IEC 14496-12 8.8.7 / 8.8.8 flags, and the sample flags FFmpeg uses as defaults.
TFHD_SAMPLE_DESCRIPTION = 0x02
TFHD_DEFAULT_DURATION = 0x08
TFHD_DEFAULT_SIZE = 0x10
TFHD_DEFAULT_FLAGS = 0x20
TFHD_BASE_IS_MOOF = 0x020000
TFHD_BASE_DATA_OFFSET = 0x01
TRUN_DATA_OFFSET = 0x01
TRUN_FIRST_SAMPLE_FLAGS = 0x04
TRUN_DURATION = 0x100
TRUN_SIZE = 0x200
TRUN_FLAGS = 0x400
TRUN_CTS = 0x800
VIDEO_DEFAULT_SAMPLE_FLAGS = 0x01010000  # depends on others, not a sync sample
AUDIO_DEFAULT_SAMPLE_FLAGS = 0x02000000  # depends on nothing
# What FFmpeg writes with +default_base_moof+cmaf: base is the moof, defaults for all three.
WRITTEN_TFHD_FLAGS = (
    TFHD_BASE_IS_MOOF | TFHD_SAMPLE_DESCRIPTION | TFHD_DEFAULT_DURATION
    | TFHD_DEFAULT_SIZE | TFHD_DEFAULT_FLAGS
)
_CONTAINERS = frozenset({"moov", "trak", "mdia", "minf", "stbl", "edts", "mvex", "moof", "traf"})


@dataclass(frozen=True)
class Sample:
    duration: int
    size: int
    flags: int
    cts: int  # composition offset (trun version 0: unsigned)
    offset: int  # where its bytes are in the source file

    @property
    def sync(self) -> bool:
        return not self.flags & 0x00010000


@dataclass
class TrackRun:
    """One traf: one track's samples of one fragment."""

    track_id: int
    decode_time: int  # tfdt
    samples: list[Sample]
    source: Path  # the file the samples' offsets point into


@dataclass
class Fragment:
    runs: list[TrackRun]


@dataclass(frozen=True)
class Track:
    track_id: int
    kind: str  # "vide" or "soun"
    timescale: int
    trak: bytes  # the whole trak box
    trex: bytes  # its trex box
    shift: int  # media time of presentation 0 (the edit list's media_time)
    # FFmpeg writes composition offsets in every trun of a track with B-frames (read from the
    # fragments: a fragmented moov has no ctts).
    has_cts: bool


@dataclass
class TrackFile:
    path: Path
    ftyp: bytes
    mvhd: bytes
    udta: bytes
    tracks: list[Track]
    fragments: list[Fragment] = field(default_factory=list)

    def track(self, kind: str) -> Track:
        found = [t for t in self.tracks if t.kind == kind]
        if len(found) != 1:
            raise Mp4LayoutError(f"{self.path.name}: expected one {kind} track, found {len(found)}")
        return found[0]

    def samples(self, track_id: int) -> Iterator[tuple[int, Sample]]:
        """(decode time, sample) of one track across every fragment, in decode order."""
        for fragment in self.fragments:
            for run in fragment.runs:
                if run.track_id == track_id:
                    dts = run.decode_time
                    for sample in run.samples:
                        yield dts, sample
                        dts += sample.duration


def _children(data: bytes, start: int, end: int) -> Iterator[tuple[str, int, int, int]]:
    """(type, box offset, body offset, box end) of the boxes in data[start:end]."""
    pos = start
    while pos + 8 <= end:
        size, raw = struct.unpack_from(">I4s", data, pos)
        body = pos + 8
        if size == 1:
            size = struct.unpack_from(">Q", data, pos + 8)[0]
            body = pos + 16
        elif size == 0:
            size = end - pos
        if size < 8 or pos + size > end:
            raise Mp4LayoutError(f"box {raw!r} at {pos} has a bad size {size}")
        yield raw.decode("latin-1"), pos, body, pos + size
        pos += size


def _find(data: bytes, start: int, end: int, path: Sequence[str]) -> tuple[int, int, int] | None:
    for kind, box, body, stop in _children(data, start, end):
        if kind == path[0]:
            return (box, body, stop) if len(path) == 1 else _find(data, body, stop, path[1:])
    return None


def _body(data: bytes, path: Sequence[str]) -> bytes:
    found = _find(data, 0, len(data), path)
    if found is None:
        raise Mp4LayoutError(f"no {'/'.join(path)} box")
    return data[found[1]:found[2]]


def _parse_track(trak: bytes, trexes: dict[int, bytes], movie_timescale: int) -> Track:
    tkhd = _body(trak, ["trak", "tkhd"])
    track_id = struct.unpack_from(">I", tkhd, 20 if tkhd[0] == 1 else 12)[0]
    mdhd = _body(trak, ["trak", "mdia", "mdhd"])
    timescale = struct.unpack_from(">I", mdhd, 20 if mdhd[0] == 1 else 12)[0]
    kind = _body(trak, ["trak", "mdia", "hdlr"])[8:12].decode("latin-1")
    if track_id not in trexes:
        raise Mp4LayoutError(f"track {track_id} has no trex")
    return Track(track_id, kind, timescale, trak, trexes[track_id],
                 _edit_shift(trak, timescale, movie_timescale), has_cts=False)


def _edit_shift(trak: bytes, timescale: int, movie_timescale: int) -> int:
    """Media time shown at presentation 0: the edit's media_time, less a leading empty edit.

    FFmpeg writes an empty edit (media_time -1) for a track that starts after the others (in
    movie-timescale units, so the conversion rounds to the movie's 1/1000 s).
    """
    elst = _find(trak, 0, len(trak), ["trak", "edts", "elst"])
    if elst is None:
        return 0
    body = trak[elst[1]:elst[2]]
    version, count = body[0], struct.unpack_from(">I", body, 4)[0]
    fmt, step = (">Qq", 20) if version == 1 else (">Ii", 12)
    entries = [struct.unpack_from(fmt, body, 8 + i * step) for i in range(count)]
    empty = sum(duration for duration, media_time in entries if media_time < 0)
    media = next((media_time for _, media_time in entries if media_time >= 0), 0)
    return int(media - round(Fraction(empty * timescale, movie_timescale or 1)))


def _parse_traf(data: bytes, body: int, end: int, moof_offset: int,
                defaults: dict[int, bytes], path: Path) -> tuple[TrackRun, bool]:
    tfhd = _find(data, body, end, ["tfhd"])
    tfdt = _find(data, body, end, ["tfdt"])
    runs = [(b, s) for kind, _, b, s in _children(data, body, end) if kind == "trun"]
    if tfhd is None or tfdt is None or len(runs) != 1:
        raise Mp4LayoutError(f"traf at {moof_offset}: expected tfhd, tfdt and one trun")
    pos = tfhd[1]
    tf_flags = struct.unpack_from(">I", data, pos)[0] & 0xFFFFFF
    track_id = struct.unpack_from(">I", data, pos + 4)[0]
    pos += 8
    trex = defaults[track_id]  # trex body: flags, id, sdi, duration, size, sample flags
    duration, size, sample_flags = struct.unpack_from(">III", trex, 12)
    base = moof_offset
    if tf_flags & TFHD_BASE_DATA_OFFSET:
        base = struct.unpack_from(">Q", data, pos)[0]
        pos += 8
    if tf_flags & TFHD_SAMPLE_DESCRIPTION:
        pos += 4
    if tf_flags & TFHD_DEFAULT_DURATION:
        duration = struct.unpack_from(">I", data, pos)[0]
        pos += 4
    if tf_flags & TFHD_DEFAULT_SIZE:
        size = struct.unpack_from(">I", data, pos)[0]
        pos += 4
    if tf_flags & TFHD_DEFAULT_FLAGS:
        sample_flags = struct.unpack_from(">I", data, pos)[0]
    version = data[tfdt[1]]
    decode_time = struct.unpack_from(">Q" if version == 1 else ">I", data, tfdt[1] + 4)[0]

    pos, _ = runs[0]
    version_flags, count = struct.unpack_from(">II", data, pos)
    tr_flags = version_flags & 0xFFFFFF
    pos += 8
    data_offset = 0
    if tr_flags & TRUN_DATA_OFFSET:
        data_offset = struct.unpack_from(">i", data, pos)[0]
        pos += 4
    first_flags = None
    if tr_flags & TRUN_FIRST_SAMPLE_FLAGS:
        first_flags = struct.unpack_from(">I", data, pos)[0]
        pos += 4
    cts_format = ">i" if version_flags >> 24 else ">I"
    samples: list[Sample] = []
    cursor = base + data_offset
    for i in range(count):
        d, s, f, c = duration, size, sample_flags, 0
        if i == 0 and first_flags is not None:
            f = first_flags
        if tr_flags & TRUN_DURATION:
            d = struct.unpack_from(">I", data, pos)[0]
            pos += 4
        if tr_flags & TRUN_SIZE:
            s = struct.unpack_from(">I", data, pos)[0]
            pos += 4
        if tr_flags & TRUN_FLAGS:
            f = struct.unpack_from(">I", data, pos)[0]
            pos += 4
        if tr_flags & TRUN_CTS:
            c = struct.unpack_from(cts_format, data, pos)[0]
            pos += 4
        samples.append(Sample(d, s, f, c, cursor))
        cursor += s
    return TrackRun(track_id, decode_time, samples, path), bool(tr_flags & TRUN_CTS)


def read_track_file(path: Path) -> TrackFile:
    """Every track and every sample of one of our fragmented MP4 files."""
    with path.open("rb") as stream:
        boxes = top_level_boxes(stream)
        if [b.type for b in boxes[:2]] != ["ftyp", "moov"]:
            raise Mp4LayoutError(f"{path.name}: expected ftyp, moov at the start")
        ftyp = _read(stream, boxes[0])
        moov = _read(stream, boxes[1])
        moofs = [(b, _read(stream, b)) for b in boxes if b.type == "moof"]
    trexes: dict[int, bytes] = {}
    traks: list[bytes] = []
    mvhd = udta = b""
    for kind, box, body, end in _children(moov, 8, len(moov)):
        if kind == "mvhd":
            mvhd = moov[box:end]
        elif kind == "udta":
            udta = moov[box:end]
        elif kind == "trak":
            traks.append(moov[box:end])
        elif kind == "mvex":
            for sub, sbox, sbody, send in _children(moov, body, end):
                if sub == "trex":
                    trexes[struct.unpack_from(">I", moov, sbody + 4)[0]] = moov[sbox:send]
    version = mvhd[8] if mvhd else 0
    movie_timescale = struct.unpack_from(">I", mvhd, 8 + (20 if version == 1 else 12))[0]
    tracks = [_parse_track(trak, trexes, movie_timescale) for trak in traks]
    trex_bodies = {tid: trex[8:] for tid, trex in trexes.items()}
    fragments: list[Fragment] = []
    with_cts: set[int] = set()
    for moof, data in moofs:
        runs = []
        for kind, _, body, end in _children(data, 8, len(data)):
            if kind == "traf":
                run, cts = _parse_traf(data, body, end, moof.offset, trex_bodies, path)
                runs.append(run)
                if cts:
                    with_cts.add(run.track_id)
        fragments.append(Fragment(runs))
    tracks = [replace(t, has_cts=t.track_id in with_cts) for t in tracks]
    return TrackFile(path, ftyp, mvhd, udta, tracks, fragments)


def _read(stream: BinaryIO, box: Box) -> bytes:
    stream.seek(box.offset)
    return stream.read(box.size)


# --- writing -------------------------------------------------------------------------------


def _box(kind: str, *parts: bytes) -> bytes:
    payload = b"".join(parts)
    return struct.pack(">I4s", 8 + len(payload), kind.encode("latin-1")) + payload


def _with_track_id(box: bytes, offset: int, track_id: int) -> bytes:
    return box[:offset] + struct.pack(">I", track_id) + box[offset + 4:]


def renumber(track: Track, track_id: int) -> Track:
    """The same track under another track_ID (its tkhd and trex)."""
    trak = track.trak
    found = _find(trak, 0, len(trak), ["trak", "tkhd"])
    assert found is not None  # _parse_track found it
    _, body, _ = found
    id_at = body + (20 if trak[body] == 1 else 12)
    return replace(
        track, track_id=track_id, trak=_with_track_id(trak, id_at, track_id),
        trex=_with_track_id(track.trex, 12, track_id),
    )


def moov_box(mvhd: bytes, tracks: Sequence[Track], udta: bytes) -> bytes:
    """mvhd, the traks, mvex with their trex, udta: FFmpeg's order.

    mvhd is kept as FFmpeg wrote it for the chunk (its next_track_ID is 2 for one track or
    two: FFmpeg counts the tracks that still hold samples when delay_moov writes moov).
    """
    return _box(
        "moov", mvhd, *(t.trak for t in tracks), _box("mvex", *(t.trex for t in tracks)), udta
    )


def _default_flags(track: Track, samples: Sequence[Sample]) -> int:
    # FFmpeg takes the second sample's flags (the first is the one that differs: a keyframe).
    if len(samples) > 1:
        return samples[1].flags
    return VIDEO_DEFAULT_SAMPLE_FLAGS if track.kind == "vide" else AUDIO_DEFAULT_SAMPLE_FLAGS


def traf_box(track: Track, run: TrackRun, data_offset: int) -> bytes:
    """tfhd + tfdt + trun with FFmpeg's choice of defaults and per-sample fields."""
    samples = run.samples
    duration, size = samples[0].duration, samples[0].size
    flags = _default_flags(track, samples)
    tfhd = _box("tfhd", struct.pack(
        ">IIIIII", WRITTEN_TFHD_FLAGS, track.track_id, 1, duration, size, flags
    ))
    tfdt = _box("tfdt", struct.pack(">IQ", 1 << 24, run.decode_time))
    tr_flags = TRUN_DATA_OFFSET
    if any(s.duration != duration for s in samples):
        tr_flags |= TRUN_DURATION
    if any(s.size != size for s in samples):
        tr_flags |= TRUN_SIZE
    if any(s.flags != flags for s in samples[1:]):
        tr_flags |= TRUN_FLAGS
    elif samples[0].flags != flags:
        tr_flags |= TRUN_FIRST_SAMPLE_FLAGS
    if track.has_cts:
        tr_flags |= TRUN_CTS
    parts = [struct.pack(">IIi", tr_flags, len(samples), data_offset)]
    if tr_flags & TRUN_FIRST_SAMPLE_FLAGS:
        parts.append(struct.pack(">I", samples[0].flags))
    for s in samples:
        fields = []
        if tr_flags & TRUN_DURATION:
            fields.append(s.duration)
        if tr_flags & TRUN_SIZE:
            fields.append(s.size)
        if tr_flags & TRUN_FLAGS:
            fields.append(s.flags)
        if tr_flags & TRUN_CTS:
            fields.append(s.cts)
        parts.append(struct.pack(f">{len(fields)}I", *fields))
    return _box("traf", tfhd, tfdt, _box("trun", *parts))


def moof_box(sequence: int, tracks: Sequence[Track], fragment: Fragment) -> bytes:
    """The moof of one fragment; data offsets point into the mdat that follows it."""
    by_id = {t.track_id: t for t in tracks}

    def build(offsets: Sequence[int]) -> bytes:
        return _box("moof", _box("mfhd", struct.pack(">II", 0, sequence)), *(
            traf_box(by_id[run.track_id], run, offset)
            for run, offset in zip(fragment.runs, offsets, strict=True)
        ))

    # The moof's size does not depend on the offsets' values: build once to learn it.
    size = len(build([0] * len(fragment.runs)))
    offsets, cursor = [], size + 8
    for run in fragment.runs:
        offsets.append(cursor)
        cursor += sum(s.size for s in run.samples)
    return build(offsets)


@dataclass(frozen=True)
class SidxEntry:
    size: int
    duration: int
    sync: bool


def fragment_timing(track: Track, run: TrackRun) -> tuple[int, int]:
    """(earliest presentation time, duration) of a run as FFmpeg's global sidx states them.

    FFmpeg: the first sample's presentation time minus the edit list's shift, the duration up
    to the run's latest presentation end; a negative start (AAC priming) is cut from both.
    """
    start = run.decode_time + run.samples[0].cts - track.shift
    dts, end = run.decode_time, 0
    for sample in run.samples:
        end = max(end, dts + sample.cts + sample.duration)
        dts += sample.duration
    duration = end - track.shift - start
    if start < 0:
        duration += start
        start = 0
    return start, duration


def sidx_boxes(tracks: Sequence[Track], fragments: Sequence[Fragment],
               sizes: Sequence[int]) -> bytes:
    """One global sidx per track (FFmpeg's global_sidx), each referencing every fragment."""
    bodies: list[tuple[Track, int, bytes]] = []
    for track in tracks:
        runs = [
            next((r for r in f.runs if r.track_id == track.track_id), None) for f in fragments
        ]
        timings = [fragment_timing(track, r) if r else (0, 0) for r in runs]
        refs = b"".join(
            struct.pack(">III", size, duration, (1 << 31) if r and r.samples[0].sync else 0)
            for size, (_, duration), r in zip(sizes, timings, runs, strict=True)
        )
        first = next((start for (start, _), r in zip(timings, runs, strict=True) if r), 0)
        bodies.append((track, first, refs))
    out = []
    for i, (track, first, refs) in enumerate(bodies):
        # first_offset: the sidx boxes after this one stand between it and the fragments.
        following = sum(40 + len(later_refs) for _, _, later_refs in bodies[i + 1:])
        out.append(_box("sidx", struct.pack(
            ">IIIQQHH", 1 << 24, track.track_id, track.timescale, first, following, 0,
            len(fragments),
        ), refs))
    return b"".join(out)


def mfra_box(tracks: Sequence[Track], fragments: Sequence[Fragment],
             moof_offsets: Sequence[int]) -> bytes:
    """The random access index FFmpeg appends: per track, each fragment's start and moof.

    Entries are (time, moof offset, traf 1, trun 1, sample 1): FFmpeg numbers the traf 1 for
    every track, and players use only time and offset.
    """
    tfras = []
    for track in tracks:
        entries = [
            struct.pack(">QQBBB", fragment_timing(track, run)[0], offset, 1, 1, 1)
            for fragment, offset in zip(fragments, moof_offsets, strict=True)
            for run in fragment.runs if run.track_id == track.track_id
        ]
        tfras.append(_box(
            "tfra", struct.pack(">IIII", 1 << 24, track.track_id, 0, len(entries)), *entries
        ))
    size = 8 + sum(len(t) for t in tfras) + 16
    return _box("mfra", *tfras, _box("mfro", struct.pack(">II", 0, size)))


def write_file(
    target: Path, ftyp: bytes, moov: bytes, tracks: Sequence[Track],
    fragments: Sequence[Fragment],
) -> None:
    """ftyp, moov, the global sidx boxes, moof+mdat per fragment, mfra; data copied by range."""
    moofs = [moof_box(i + 1, tracks, f) for i, f in enumerate(fragments)]
    sizes = [
        len(moof) + 8 + sum(s.size for r in f.runs for s in r.samples)
        for moof, f in zip(moofs, fragments, strict=True)
    ]
    head = ftyp + moov + sidx_boxes(tracks, fragments, sizes)
    offsets = [len(head) + sum(sizes[:i]) for i in range(len(sizes))]
    handles: dict[Path, BinaryIO] = {}
    try:
        with target.open("wb") as out:
            out.write(head)
            for moof, fragment in zip(moofs, fragments, strict=True):
                payload = sum(s.size for r in fragment.runs for s in r.samples)
                out.write(moof + struct.pack(">I4s", 8 + payload, b"mdat"))
                for run in fragment.runs:
                    if run.source not in handles:
                        handles[run.source] = run.source.open("rb")
                    _copy_samples(handles[run.source], out, run.samples)
            out.write(mfra_box(tracks, fragments, offsets))
    finally:
        for handle in handles.values():
            handle.close()


def _copy_samples(src: BinaryIO, out: BinaryIO, samples: Sequence[Sample]) -> None:
    """Copy the samples' bytes, one read per contiguous range."""
    start = end = -1
    for sample in [*samples, None]:
        if sample is not None and sample.offset == end:
            end += sample.size
            continue
        if end > start >= 0:
            src.seek(start)
            remaining = end - start
            while remaining:
                block = src.read(min(remaining, 1 << 20))
                if not block:
                    raise Mp4LayoutError("sample data past the end of its file")
                out.write(block)
                remaining -= len(block)
        if sample is not None:
            start, end = sample.offset, sample.offset + sample.size


def split_by_time(
    samples: Sequence[tuple[int, Sample]], track: Track, bounds: Sequence[Fraction],
    source: Path,
) -> list[TrackRun]:
    """Deal a track's samples out to fragments as FFmpeg's interleaving does.

    `bounds` are the fragments' start times (seconds, on the muxer's clock: decode time
    minus the edit list's shift) of the track that cuts fragments (video). A sample goes to
    the last fragment starting at or before its own muxer time; ties go to the later one
    (FFmpeg interleaves the video packet first, and it opens the new fragment).
    """
    runs: list[TrackRun] = [TrackRun(track.track_id, 0, [], source) for _ in bounds]
    k = 0
    for dts, sample in samples:
        at = Fraction(dts - track.shift, track.timescale)
        while k + 1 < len(bounds) and at >= bounds[k + 1]:
            k += 1
        if not runs[k].samples:
            runs[k].decode_time = dts
        runs[k].samples.append(sample)
    return runs
