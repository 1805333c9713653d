"""The chunked path's steps as the transcoder runs them: one rule for the operator and the
embedded mode.

`chunk_step_args` is the transcoder command line of a `chunks/<rung>` (or SinglePass `chunks`),
`audio` or `assemble/<rung>` step; callers only say where things are (`s3://…` URIs for a Job
pod, storage keys relative to the local storage root for an embedded subprocess).
`intermediates_prefix` says when the chunks and audio files go, and which.
"""

from __future__ import annotations

from collections.abc import Sequence

from videoflix_core import storage
from videoflix_core.chunks import Chunk, default_audio_kbps, starts_arg
from videoflix_core.ladder import Rung
from videoflix_core.status import (
    ASSEMBLE_PREFIX,
    AUDIO,
    CHUNKS,
    Aggregate,
    is_chunk_step,
    spec_hash,
)
from videoflix_core.transcode import VideoTranscodeSpec, VideoTranscodeStatus


def audio_kbps(rung: Rung) -> int:
    """The AAC rate of a rung's audio track: its own, else the transcoder's default."""
    return rung.audio_bitrate if rung.audio_bitrate is not None else default_audio_kbps(rung.height)


def video_rate_args(rung: Rung) -> list[str]:
    """A rung's `rendition` rate arguments without the audio rate (the audio step has it)."""
    args = rung.cli_args()
    if "--audio-bitrate" in args:
        at = args.index("--audio-bitrate")
        del args[at : at + 2]
    return args


def is_chunked_step(step: str) -> bool:
    """A step of the chunked path: chunks, audio or assemble."""
    return is_chunk_step(step) or step == AUDIO or step.startswith(ASSEMBLE_PREFIX)


def chunk_step_args(
    step: str,
    rungs: Sequence[Rung],
    chunks: Sequence[Chunk],
    *,
    source: str,
    dest: str,
    work: str,
    result_to: str | None,
    with_audio: bool = True,
) -> list[str]:
    """The transcoder CLI of one chunked step (see the transcoder's `chunked` module).

    A chunks step gets no `--result-to`: every index would write the one key, and its verdict
    and completed indexes are what counts; the index comes from JOB_COMPLETION_INDEX.
    """
    result = ["--result-to", result_to] if result_to else []
    if is_chunk_step(step):
        args = ["chunk", "--source", source, "--dest", dest, "--work", work]
        args += ["--starts", starts_arg(list(chunks))]
        for rung in rungs:
            width, height = rung.planned_size
            args += ["--rung", f"{rung.name}:{width}x{height}"]
        if step != CHUNKS:
            # One rung: its video rates, as its unchunked rendition would get them (the audio
            # rate goes to the audio step). SinglePass, like `ladder`, keeps the defaults.
            [rung] = rungs
            args += video_rate_args(rung)
        return args
    if step == AUDIO:
        args = ["audio", "--source", source, "--dest", dest, "--work", work, *result]
        for kbps in sorted({audio_kbps(r) for r in rungs}):
            args += ["--bitrate", str(kbps)]
        return args
    if step.startswith(ASSEMBLE_PREFIX):
        [rung] = rungs
        args = ["assemble", "--dest", dest, "--work", work, *result, "--name", rung.name]
        args += ["--starts", starts_arg(list(chunks))]
        if with_audio:
            args += ["--audio-bitrate", str(audio_kbps(rung))]
        return args
    raise ValueError(f"{step!r} is not a step of the chunked path")


def intermediates_prefix(
    spec: VideoTranscodeSpec, agg: Aggregate, previous: VideoTranscodeStatus | None
) -> str | None:
    """The storage prefix of the chunked run's intermediates to delete now, else None.

    Once, when the transcode ends (the chunks and the audio file are in the assembled files
    now, or useless after a failure): a finished transcode costs no listing per pass.
    """
    if not agg.chunks or not agg.status.phase.is_final:
        return None
    if previous is not None and previous.phase.is_final:
        return None
    work = storage.chunk_work(spec.transcode_generation, spec_hash(spec))
    return storage.video_prefix(spec.video_id) + work + "/"
