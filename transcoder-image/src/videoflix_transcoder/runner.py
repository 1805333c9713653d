"""Run FFmpeg/ffprobe as child processes: progress lines, stderr tail, stop on termination."""

from __future__ import annotations

import json
import logging
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

from videoflix_transcoder.errors import TransientError

log = logging.getLogger(__name__)

STOP_GRACE_SECONDS = 10
PROGRESS_MIN_INTERVAL = 2.0  # seconds between progress lines: pod logs are not a stream


class FfmpegFailed(TransientError):
    def __init__(self, returncode: int, stderr: str) -> None:
        last = stderr.strip().splitlines()[-1] if stderr.strip() else "no error output"
        super().__init__(f"ffmpeg exited with {returncode}: {last}")
        self.returncode = returncode
        self.stderr = stderr


@dataclass
class Progress:
    percent: float
    speed: float | None
    out_seconds: float = 0.0


class ProgressParser:
    """Folds FFmpeg's `-progress` key=value blocks into Progress values."""

    def __init__(self, duration_seconds: float) -> None:
        self.duration = duration_seconds
        self._block: dict[str, str] = {}

    def feed(self, line: str) -> Progress | None:
        key, sep, value = line.strip().partition("=")
        if not sep:
            return None
        if key != "progress":
            self._block[key] = value
            return None
        block, self._block = self._block, {}
        try:
            # out_time_ms is microseconds too, despite its name
            out_seconds = int(block.get("out_time_us") or block.get("out_time_ms") or "") / 1e6
        except ValueError:
            out_seconds = 0.0
        if value == "end":
            return Progress(100.0, _speed(block.get("speed")), out_seconds)
        percent = 100.0 * out_seconds / self.duration if self.duration > 0 else 0.0
        return Progress(
            round(min(99.9, max(0.0, percent)), 1), _speed(block.get("speed")), out_seconds
        )


def _speed(value: str | None) -> float | None:
    try:
        return round(float((value or "").rstrip("x")), 3)
    except ValueError:
        return None


def _drain(stream: IO[str], tail: deque[str]) -> None:
    for line in stream:
        tail.append(line)


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is not None:
        return
    log.info("Stopping ffmpeg", extra={"pid": proc.pid})
    proc.terminate()
    try:
        proc.wait(timeout=STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_ffmpeg(
    argv: list[str],
    *,
    duration_seconds: float = 0.0,
    on_progress: Callable[[Progress], None] | None = None,
    throttle: bool = True,
) -> None:
    """Run FFmpeg to completion; raise FfmpegFailed with the last error line otherwise.

    If this frame is left by an exception (Terminated from the SIGTERM handler), FFmpeg is
    terminated and reaped before the exception goes on, so no encoder outlives us.
    """
    log.debug("Running %s", " ".join(argv))
    tail: deque[str] = deque(maxlen=40)
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, errors="replace",
    )
    assert proc.stdout is not None and proc.stderr is not None
    drainer = threading.Thread(target=_drain, args=(proc.stderr, tail), daemon=True)
    drainer.start()
    parser = ProgressParser(duration_seconds)
    last_sent = 0.0
    try:
        for line in proc.stdout:
            progress = parser.feed(line)
            if progress is None or on_progress is None:
                continue
            now = time.monotonic()
            due = now - last_sent >= PROGRESS_MIN_INTERVAL or progress.percent >= 100
            if due or not throttle:
                last_sent = now
                on_progress(progress)
        returncode = proc.wait()
    finally:
        _stop(proc)
    drainer.join(timeout=5)
    if returncode != 0:
        raise FfmpegFailed(returncode, "".join(tail))


def run_json(argv: list[str], timeout: float = 300) -> dict[str, Any]:
    """Run ffprobe with JSON output; its exit status is left to the caller's parser."""
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, errors="replace",
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise TransientError(f"{argv[0]} timed out after {timeout:.0f} s") from exc
    finally:
        _stop(proc)
    try:
        report: dict[str, Any] = json.loads(out) if out.strip() else {}
    except json.JSONDecodeError as exc:
        raise TransientError(f"{argv[0]} printed no JSON: {err.strip()[-200:]}") from exc
    if proc.returncode != 0 and "error" not in report:
        report["error"] = {"string": err.strip().splitlines()[-1] if err.strip() else "failed"}
    if "error" in report:
        # The parser needs FFmpeg's own words for some refusals ("Format not on whitelist").
        report["error"]["stderr"] = err[-2000:]
    return report
