"""Run one transcoder step (`python -m videoflix_transcoder …`) as a local subprocess.

This is the embedded mode's stand-in for a Kubernetes Job pod: the same entrypoint, the same
arguments, the same JSON lines on stdout and the same result file (the pod's termination message).
Only the plumbing differs, so whatever works here works in a Job and vice versa.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

# Exit codes of the transcoder contract: 0 done, 2 bad input (never retried), else transient.
EXIT_OK = 0
EXIT_BAD_INPUT = 2

# A pod's termination message is capped at 4 KiB; reading a little more tolerates nothing silently.
_RESULT_LIMIT = 64 * 1024
_STDERR_TAIL = 20
STOP_GRACE_SECONDS = 5.0

ProgressCallback = Callable[[float], Awaitable[None] | None]


@dataclass(frozen=True)
class StepOutcome:
    """What one finished step reported, the local equivalent of a terminated pod."""

    exit_code: int
    result: dict[str, Any] | None
    message: str | None

    @property
    def succeeded(self) -> bool:
        return self.exit_code == EXIT_OK and self.result is not None and "error" not in self.result

    @property
    def permanent_failure(self) -> bool:
        """Bad input (exit 2) fails for good; everything else may succeed when retried."""
        return self.exit_code == EXIT_BAD_INPUT


def default_entrypoint() -> list[str]:
    """This interpreter's transcoder, so this environment's transcoder runs."""
    return [sys.executable, "-m", "videoflix_transcoder"]


def transcoder_argv(
    step: str, args: Sequence[str], entrypoint: Sequence[str] | None = None
) -> list[str]:
    """The command line of one step: the entrypoint (the local counterpart of the operator's
    transcoder image), the subcommand, its arguments."""
    return [*(entrypoint or default_entrypoint()), step, *args]


def parse_line(line: str) -> tuple[str, Any] | None:
    """("progress", {...}) or ("result", {...}) for a transcoder JSON line, else None."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        data = json.loads(line)
    except ValueError:
        return None
    if not isinstance(data, dict) or len(data) != 1:
        return None
    kind, value = next(iter(data.items()))
    if kind in ("progress", "result") and isinstance(value, dict):
        return kind, value
    return None


def failure_message(
    exit_code: int, result: Mapping[str, Any] | None, stderr_tail: Sequence[str]
) -> str:
    """One line saying why a step failed: the transcoder's own reason when it gave one."""
    if result and isinstance(result.get("error"), str) and result["error"]:
        return str(result["error"])
    if exit_code < 0:
        return f"transcoder killed by signal {-exit_code}"
    last = next((line.strip() for line in reversed(stderr_tail) if line.strip()), "")
    suffix = f": {last}" if last else ""
    return f"transcoder exited with code {exit_code}{suffix}"[:500]


def _read_result_file(path: Path) -> dict[str, Any] | None:
    try:
        raw = path.read_bytes()[:_RESULT_LIMIT]
    except FileNotFoundError:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


async def run_step(
    step: str,
    args: Sequence[str],
    *,
    scratch_dir: Path,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    on_progress: ProgressCallback | None = None,
    entrypoint: Sequence[str] | None = None,
) -> StepOutcome:
    """Run one step to completion in `cwd`; progress lines go to `on_progress` (percent 0-100).

    The result comes from the last `{"result": …}` stdout line, or else the result file (as the
    operator reads the termination message when the log is gone).
    """
    scratch_dir.mkdir(parents=True, exist_ok=True)
    result_file = scratch_dir / "result.json"
    result_file.unlink(missing_ok=True)
    child_env = dict(os.environ)
    child_env.update(env or {})
    child_env["VIDEOFLIX_SCRATCH_DIR"] = str(scratch_dir)
    # Always explicit: running as root, /dev/termination-log could otherwise be created and shared.
    child_env["VIDEOFLIX_RESULT_FILE"] = str(result_file)
    argv = transcoder_argv(step, args, entrypoint)
    logger.debug("Started transcoder step", extra={"argv": argv})
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=child_env,
        cwd=str(cwd or scratch_dir),
        # Own process group, so stopping the server can stop ffmpeg grandchildren too.
        start_new_session=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    result: dict[str, Any] | None = None
    stderr_tail: list[str] = []

    async def read_stdout() -> None:
        nonlocal result
        assert proc.stdout is not None
        async for raw in proc.stdout:
            parsed = parse_line(raw.decode("utf-8", "replace"))
            if parsed is None:
                continue
            kind, value = parsed
            if kind == "result":
                result = value
            elif on_progress is not None and isinstance(value.get("percent"), int | float):
                maybe = on_progress(float(value["percent"]))
                if maybe is not None:
                    await maybe

    async def read_stderr() -> None:
        assert proc.stderr is not None
        async for raw in proc.stderr:
            stderr_tail.append(raw.decode("utf-8", "replace").rstrip())
            del stderr_tail[:-_STDERR_TAIL]

    try:
        await asyncio.gather(read_stdout(), read_stderr())
        exit_code = await proc.wait()
    except asyncio.CancelledError:
        await _stop_group(proc)
        raise
    if result is None:
        result = _read_result_file(result_file)
    outcome = StepOutcome(
        exit_code=exit_code,
        result=result,
        message=None
        if exit_code == EXIT_OK and result and "error" not in result
        else failure_message(exit_code, result, stderr_tail),
    )
    if exit_code == EXIT_OK and result is None:
        # What a pod whose termination message is lost looks like: the caller looks for the
        # stored result (videoflix_core.results), and runs the step again without one.
        outcome = StepOutcome(
            exit_code=EXIT_OK, result=None, message="transcoder reported no result"
        )
    return outcome


def _signal_group(proc: asyncio.subprocess.Process, signum: int) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signum)


async def _stop_group(proc: asyncio.subprocess.Process) -> None:
    """Like a pod's termination: SIGTERM (the transcoder stops FFmpeg and cleans up), then
    SIGKILL for the whole group after a grace period, so no encoder outlives the server."""
    _signal_group(proc, signal.SIGTERM)
    try:
        await asyncio.wait_for(asyncio.shield(proc.wait()), STOP_GRACE_SECONDS)
    except TimeoutError:
        _signal_group(proc, signal.SIGKILL)
        with contextlib.suppress(Exception):
            await proc.wait()
    # FFmpeg shares the group; make sure nothing of it is left even if the transcoder died first.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
