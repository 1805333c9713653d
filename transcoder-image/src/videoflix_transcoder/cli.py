"""Command line of the transcoder image: the contract the operator's Jobs and the embedded
runner call. See transcoder-image/README.md."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

from videoflix_transcoder import chunked, commands, plan
from videoflix_transcoder.errors import (
    EXIT_BAD_INPUT,
    EXIT_OK,
    EXIT_TERMINATED,
    EXIT_TRANSIENT,
    BadInput,
    Terminated,
    TransientError,
)
from videoflix_transcoder.runner import Progress
from videoflix_transcoder.storage import Storage, parse_uri

log = logging.getLogger("videoflix_transcoder")

RESULT_LIMIT = 4096  # Kubernetes keeps at most 4 KiB of a termination message
DEFAULT_RESULT_FILE = "/dev/termination-log"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # Usage errors are bad input too, and get the same one-line result.
        raise BadInput(f"{self.prog}: {message}")


def _name(value: str) -> str:
    if not _NAME.match(value):
        raise argparse.ArgumentTypeError(f"bad rendition name {value!r} (letters, digits, _ -)")
    return value


_SIZE = re.compile(r"^([0-9]{1,5})x([0-9]{1,5})$")


def _rung(value: str) -> tuple[str, int, int]:
    name, sep, size = value.partition(":")
    match = _SIZE.match(size)
    if not sep or not match:
        raise argparse.ArgumentTypeError(
            f"bad rung {value!r}: expected NAME:WIDTHxHEIGHT, e.g. 720p:1280x720"
        )
    return _name(name), int(match[1]), int(match[2])


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="videoflix_transcoder", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def common(p: argparse.ArgumentParser, dest: bool = True) -> None:
        p.add_argument("--source", required=True, help="s3://bucket/key or a local path")
        p.add_argument(
            "--result-to",
            help="also store the result JSON here (s3://bucket/key or a local path), last",
        )
        if dest:
            p.add_argument("--dest", required=True, help="output prefix: s3://bucket/videos/42/")

    def encoding(p: argparse.ArgumentParser) -> None:
        p.add_argument("--preset", default=plan.DEFAULT_PRESET, help="x264 preset")
        p.add_argument("--crf", type=int, help=f"x264 CRF (default {plan.DEFAULT_CRF})")

    common(sub.add_parser("probe", help="print duration, size, codecs of the source"), dest=False)
    rendition = sub.add_parser("rendition", help="encode one rung")
    common(rendition)
    encoding(rendition)
    rendition.add_argument("--name", required=True, type=_name)
    rendition.add_argument("--width", required=True, type=int, help="output width in pixels")
    rendition.add_argument("--height", required=True, type=int, help="output height in pixels")
    rendition.add_argument("--video-bitrate", type=int, help="kbit/s: ABR instead of capped CRF")
    rendition.add_argument("--maxrate", type=int, help="kbit/s cap")
    rendition.add_argument("--bufsize", type=int, help="kbit/s VBV buffer (default 2x maxrate)")
    rendition.add_argument("--audio-bitrate", type=int, help="kbit/s AAC")
    ladder = sub.add_parser("ladder", help="encode several rungs in one FFmpeg process")
    common(ladder)
    encoding(ladder)
    ladder.add_argument("--rung", required=True, action="append", type=_rung, dest="rungs")
    common(sub.add_parser("thumbnail", help="poster, storyboard sprite and WebVTT index"))
    chunked.add_parsers(sub, _rung, _name)  # chunk, audio, assemble
    return parser


def _out(text: str) -> None:
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        # Nobody reads any more (the embedded server was killed under its step). The work goes
        # on: its result still lands in the result file and in storage, where the restarted
        # server finds it. Later writes (and the flush at exit) go nowhere instead of failing.
        devnull = os.open(os.devnull, os.O_WRONLY)
        for stream in (sys.stdout, sys.stderr):
            os.dup2(devnull, stream.fileno())
        os.close(devnull)


def _write(line: Mapping[str, Any]) -> None:
    _out(json.dumps(line, separators=(",", ":")))


def emit_progress(progress: Progress) -> None:
    _write({"progress": {"percent": progress.percent, "speed": progress.speed}})


def fit_result(result: dict[str, Any]) -> str:
    text = json.dumps(result, separators=(",", ":"))
    if len(text.encode()) > RESULT_LIMIT and "error" in result:
        text = json.dumps({"error": str(result["error"])[:1000]}, separators=(",", ":"))
    return text


def result_file(env: Mapping[str, str]) -> str | None:
    configured = env.get("VIDEOFLIX_RESULT_FILE")
    if configured:
        return configured
    return DEFAULT_RESULT_FILE if os.access(DEFAULT_RESULT_FILE, os.W_OK) else None


def emit_result(result: dict[str, Any], env: Mapping[str, str]) -> None:
    text = fit_result(result)
    target = result_file(env)
    if target:
        try:
            Path(target).write_text(text)
        except OSError:
            log.warning("Could not write the result file %s", target, exc_info=True)
    _out('{"result":' + text + "}")


def _install_signal_handlers() -> None:
    def handler(signum: int, _frame: FrameType | None) -> None:
        # Raise once; cleanup that follows must not be interrupted by a second signal.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise Terminated(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def run(args: argparse.Namespace, env: Mapping[str, str], scratch: Path) -> dict[str, Any]:
    ctx = commands.Context(
        storage=Storage(env),
        scratch=scratch,
        threads=plan.threads_from_cpu_limit(env.get("VIDEOFLIX_CPU_LIMIT")),
        on_progress=emit_progress,
    )
    result = _step(ctx, args)
    if args.result_to:
        # After the outputs: a stored result proves them complete, and it outlives the pod whose
        # termination message carries the same JSON. Failing to store it fails the attempt.
        ctx.storage.put_result(
            json.dumps(result, separators=(",", ":")), parse_uri(args.result_to), scratch
        )
    return result


def _step(ctx: commands.Context, args: argparse.Namespace) -> dict[str, Any]:
    if args.command in chunked.COMMANDS:
        return chunked.run(ctx, args)
    if args.command == "probe":
        return commands.probe(ctx, args.source)
    if args.command == "thumbnail":
        return commands.thumbnail(ctx, args.source, args.dest)
    if args.command == "rendition":
        rung = plan.with_overrides(
            plan.default_rung(args.name, args.width, args.height),
            video_kbps=args.video_bitrate, maxrate_kbps=args.maxrate,
            bufsize_kbps=args.bufsize, audio_kbps=args.audio_bitrate, crf=args.crf,
        )
        return commands.renditions(ctx, args.source, args.dest, [rung], preset=args.preset)
    names = [name for name, _, _ in args.rungs]
    if len(set(names)) != len(names):
        raise BadInput(f"duplicate rung names in {names}")
    rungs = [
        plan.with_overrides(plan.default_rung(name, width, height), crf=args.crf)
        for name, width, height in args.rungs
    ]
    return commands.renditions(ctx, args.source, args.dest, rungs, preset=args.preset)


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    logging.basicConfig(
        level=env.get("VIDEOFLIX_LOG_LEVEL", "INFO").upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    _install_signal_handlers()
    code, result = EXIT_TRANSIENT, {"error": "internal error"}
    try:
        args = build_parser().parse_args(argv)
        scratch_root = env.get("VIDEOFLIX_SCRATCH_DIR") or None
        if scratch_root:
            Path(scratch_root).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="videoflix-", dir=scratch_root) as scratch:
            result = run(args, env, Path(scratch))
        code = EXIT_OK
    except BadInput as exc:
        code, result = EXIT_BAD_INPUT, {"error": str(exc)}
    except Terminated as exc:
        log.warning("Stopped on %s; outputs were not published", exc)
        code, result = EXIT_TERMINATED, {"error": f"terminated by {exc}"}
    except TransientError as exc:
        log.error("Failed: %s", exc)
        code, result = EXIT_TRANSIENT, {"error": str(exc)}
    except OSError as exc:  # a full scratch disk, a vanished file: worth a retry
        log.exception("Failed")
        code, result = EXIT_TRANSIENT, {"error": f"{type(exc).__name__}: {exc}"}
    except Exception as exc:
        log.exception("Failed unexpectedly")
        code, result = EXIT_TRANSIENT, {"error": f"{type(exc).__name__}: {exc}"}
    emit_result(result, env)
    return code
