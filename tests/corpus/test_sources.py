"""The corpus is what it claims to be (checked with ffprobe), and the README table is its data."""

from __future__ import annotations

import itertools
import re
import subprocess
from fractions import Fraction
from pathlib import Path
from typing import Any

from tests.corpus.checks import ffprobe
from tests.corpus.sources import BY_ID, ENTRIES, generate, table

README = Path(__file__).resolve().parents[2] / "transcoder-image" / "README.md"


def video(corpus: dict[str, Path], entry_id: str) -> dict[str, Any]:
    streams = ffprobe(corpus[entry_id])["streams"]
    return next(s for s in streams if s["codec_type"] == "video")


def rotation(stream: dict[str, Any]) -> int:
    return next(int(d["rotation"]) for d in stream.get("side_data_list", []) if "rotation" in d)


def test_rotated_sources_carry_a_display_matrix(corpus: dict[str, Path]) -> None:
    for degrees in (90, 180, 270):
        stream = video(corpus, f"rotated-{degrees}")
        assert (stream["width"], stream["height"]) == (1920, 1080)
        assert rotation(stream) % 360 in {degrees, 360 - degrees}


def test_hdr_sources_are_10_bit_hevc_with_pq_and_hlg(corpus: dict[str, Path]) -> None:
    for entry_id, transfer in (("hdr-pq-2160p", "smpte2084"), ("hdr-hlg-2160p", "arib-std-b67")):
        stream = video(corpus, entry_id)
        assert (stream["codec_name"], stream["pix_fmt"]) == ("hevc", "yuv420p10le")
        assert (stream["width"], stream["height"]) == (3840, 2160)
        assert (stream["color_primaries"], stream["color_transfer"]) == ("bt2020", transfer)


def test_vfr_source_has_mixed_frame_durations(corpus: dict[str, Path]) -> None:
    stream = video(corpus, "vfr")
    assert Fraction(stream["avg_frame_rate"]) != Fraction(stream["r_frame_rate"])
    frames = ffprobe_frames(corpus["vfr"])
    gaps = {round(b - a, 3) for a, b in itertools.pairwise(frames)}
    assert len(gaps) >= 2 and max(gaps) - min(gaps) >= 0.005, gaps


def ffprobe_frames(path: Path) -> list[float]:
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "packet=pts_time",
            "-of",
            "csv=p=0",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sorted(float(line) for line in out.split())


def test_shape_sources(corpus: dict[str, Path]) -> None:
    anamorphic = video(corpus, "anamorphic-576")
    assert (anamorphic["width"], anamorphic["height"]) == (720, 576)
    assert anamorphic["sample_aspect_ratio"] == "64:45"
    assert anamorphic["display_aspect_ratio"] == "16:9"
    assert video(corpus, "interlaced-576i")["field_order"] == "tt"
    assert Fraction(video(corpus, "fps-60")["avg_frame_rate"]) == 60
    for entry_id, size in (("odd-1279x719", (1279, 719)), ("odd-853x481", (853, 481))):
        stream = video(corpus, entry_id)
        assert (stream["width"], stream["height"]) == size
        assert stream["sample_aspect_ratio"] in ("1:1", None), stream.get("sample_aspect_ratio")


def test_audio_layouts(corpus: dict[str, Path]) -> None:
    def audio(entry_id: str) -> list[tuple[str, int, str]]:
        streams = ffprobe(corpus[entry_id])["streams"]
        return [
            (s["codec_name"], s["channels"], s["sample_rate"])
            for s in streams
            if s["codec_type"] == "audio"
        ]

    assert audio("multi-audio-5.1") == [("aac", 6, "48000"), ("opus", 2, "48000")]
    assert audio("mov-5.1-44k") == [("aac", 6, "44100")]
    assert audio("avi") == [("mp3", 1, "44100")]
    assert audio("no-audio") == []
    streams = ffprobe(corpus["audio-only"])["streams"]
    assert [s["codec_type"] for s in streams] == ["audio"]
    assert float(ffprobe(corpus["short-0.5s"])["format"]["duration"]) < 0.6


def test_generation_is_cached_and_keyed_by_the_recipe(corpus: dict[str, Path]) -> None:
    entry = BY_ID["no-audio"]
    before = corpus[entry.id].stat().st_mtime_ns
    assert generate(entry) == corpus[entry.id]
    assert corpus[entry.id].stat().st_mtime_ns == before  # not rebuilt
    digests = {e.digest() for e in ENTRIES}
    assert len(digests) == len(ENTRIES)


def test_readme_outcomes_table_is_the_corpus_data() -> None:
    text = README.read_text()
    section = re.search(r"## Outcomes by source\n(.*?)(?=\n## |\Z)", text, re.S)
    assert section, "transcoder-image/README.md lacks the 'Outcomes by source' section"
    assert table() in section.group(1), "regenerate: python -m tests.corpus.sources --table"
