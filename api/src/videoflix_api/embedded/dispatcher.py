"""`LocalDispatcher`: the embedded mode's implementation of the API's `Dispatcher` protocol.

`submit` takes the same request the cluster mode puts into a `VideoTranscode` (a
`VideoTranscodeSpec`), runs the transcoder entrypoint as local subprocesses, and folds their results
with `videoflix_core.status.aggregate` into the row through `videoflix_core.outcome.write_outcome`,
exactly as the operator does with its Jobs. How the two modes differ is laid out in one place: the
docstring of `videoflix_api.embedded`.

The dispatcher owns one event loop in a background thread: the API calls `submit`/`cancel` from any
thread (sync routes run in a pool), and a slow database write never stalls request handling.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from videoflix_core.chunk_steps import chunk_step_args, intermediates_prefix, is_chunked_step
from videoflix_core.chunks import Chunk, format_indexes, parse_indexes
from videoflix_core.db import Video
from videoflix_core.ladder import Rung
from videoflix_core.outcome import write_outcome
from videoflix_core.results import Decision, needs_stored, parse_stored, step_result
from videoflix_core.states import ProcessingState
from videoflix_core.status import (
    PROBE,
    RENDITION_PREFIX,
    THUMBNAIL,
    Aggregate,
    Outcome,
    StepObservation,
    aggregate,
    is_chunk_step,
    live_progress,
    outcome,
    spec_hash,
)
from videoflix_core.storage import chunk_work, chunks_prefix, step_result_key, video_prefix
from videoflix_core.transcode import (
    Phase,
    SourceRef,
    VideoTranscodeSpec,
    VideoTranscodeStatus,
)

from videoflix_api.embedded.runner import EXIT_OK, StepOutcome, run_step
from videoflix_api.embedded.storage import LocalStorage

log = logging.getLogger(__name__)

# How often a running transcode writes its progress into the row at most (the page polls ~1.5 s).
_PROGRESS_WRITE_SECONDS = 1.0


def default_parallelism() -> int:
    """One transcoder step per core: each ffmpeg then gets a core of its own."""
    return max(1, os.cpu_count() or 1)


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def spec_for(video: Video, bucket: str) -> VideoTranscodeSpec:
    """The spec the API would put into the video's `VideoTranscode` (default ladder, thumbnail)."""
    if not video.source_key:
        raise ValueError(f"video {video.id} has no source to transcode")
    return VideoTranscodeSpec(
        video_id=video.id,
        transcode_generation=video.transcode_generation,
        source=SourceRef(bucket=bucket, key=video.source_key),
    )


def step_args(step: str, spec: VideoTranscodeSpec, rung: Rung | None) -> tuple[str, list[str]]:
    """(subcommand, arguments) of one step. Paths are storage keys: the transcoder runs with the
    storage root as its working directory, so a key is a valid relative path and the keys it
    reports back are the storage keys the row needs."""
    source = ["--source", spec.source.key]
    dest = ["--dest", video_prefix(spec.video_id)]
    if step == PROBE:
        return "probe", source
    if step == THUMBNAIL:
        return "thumbnail", source + dest
    if step.startswith(RENDITION_PREFIX) and rung is not None:
        # The planned size and rung.cli_args(): the very arguments of the operator's Jobs.
        width, height = rung.planned_size
        return "rendition", [
            *source,
            *dest,
            "--name",
            rung.name,
            "--width",
            str(width),
            "--height",
            str(height),
            *rung.cli_args(),
        ]
    raise ValueError(f"unknown step {step!r}")


def chunked_step_args(
    step: str,
    spec: VideoTranscodeSpec,
    rungs: Sequence[Rung],
    chunks: Sequence[Chunk],
    with_audio: bool,
) -> tuple[str, list[str]]:
    """(subcommand, arguments) of a `chunks/<rung>`, `audio` or `assemble/<rung>` step: the
    operator's very arguments (`videoflix_core.chunk_steps`), with storage keys as paths."""
    args = chunk_step_args(
        step,
        rungs,
        chunks,
        source=spec.source.key,
        dest=video_prefix(spec.video_id),
        work=chunk_work(spec.transcode_generation, spec_hash(spec)),
        result_to=None if is_chunk_step(step) else result_key(spec, step),
        with_audio=with_audio,
    )
    return args[0], args[1:]


def result_key(spec: VideoTranscodeSpec, step: str) -> str:
    """Where the step stores its result (`--result-to`): the operator's key, in local storage."""
    return step_result_key(spec.video_id, spec.transcode_generation, spec_hash(spec), step)


def refined_progress(status: VideoTranscodeStatus, running: Mapping[str, float]) -> int:
    """The aggregate's progress plus the live share of running steps (their ffmpeg percent).

    The very fold the operator applies to its pods' progress lines, so both modes agree.
    """
    return live_progress(status, running)


@dataclass(frozen=True)
class ProcessRun:
    """One transcoder subprocess the dispatcher ran: which step (and chunk index), and when
    (monotonic seconds): what shows that the core limit held."""

    step: str
    index: int | None
    started: float
    ended: float


@dataclass
class IndexedRun:
    """The indexes of one chunks step: the local counterpart of an Indexed Job's status."""

    total: int
    done: set[int] = field(default_factory=set)
    failed: set[int] = field(default_factory=set)  # out of retries, or bad input
    active: int = 0
    failures: int = 0  # failed attempts over all indexes (the Job's `status.failed`)
    started_at: str | None = None
    finished_at: str | None = None
    message: str | None = None


def indexed_observation(step: str, run: IndexedRun) -> StepObservation:
    """What the operator observes of an Indexed Job in the same state: one index out of
    retries fails the step (maxFailedIndexes 0), every index done completes it."""
    finished: Literal["Complete", "Failed"] | None = (
        "Failed" if run.failed else "Complete" if len(run.done) == run.total else None
    )
    return StepObservation(
        name=step,
        suspended=run.started_at is None,
        active=run.active,
        succeeded=len(run.done),
        failed=run.failures,
        finished=finished,
        message=run.message if finished == "Failed" else None,
        started_at=run.started_at,
        finished_at=run.finished_at if finished is not None else None,
        completed_indexes=format_indexes(run.done) or None,
        failed_indexes=format_indexes(run.failed) or None,
    )


@dataclass
class _Transcode:
    """The local counterpart of one `VideoTranscode`: spec, observed steps, last status."""

    spec: VideoTranscodeSpec
    steps: dict[str, StepObservation] = field(default_factory=dict)
    running: dict[str, float] = field(default_factory=dict)
    status: VideoTranscodeStatus | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    last_write: float = 0.0
    progress_mark: int = 0
    # Indexes of unfinished chunks steps done before a restart ("0-2,4"): their chunk files
    # are in storage, so only the others run again (as the Job controller keeps them).
    done_indexes: dict[str, str] = field(default_factory=dict)


class LocalDispatcher:
    """Runs transcodes as local subprocesses; see the module docstring for how it mirrors the
    operator."""

    def __init__(
        self,
        storage: LocalStorage,
        engine: Engine,
        state_dir: Path,
        *,
        max_parallel: int | None = None,
        max_attempts: int = 3,
        retry_delay_seconds: float = 1.0,
        step_env: Mapping[str, str] | None = None,
        chunk_seconds: float = 0.0,
        entrypoint: Sequence[str] | None = None,
    ) -> None:
        if max_parallel is not None and max_parallel < 1:
            raise ValueError("max_parallel must be at least 1")
        if not (math.isfinite(chunk_seconds) and chunk_seconds >= 0):
            raise ValueError("chunk_seconds must be 0 (off) or positive")
        self.storage = storage
        self.engine = engine
        self.state_dir = state_dir
        self.scratch_dir = state_dir / "scratch"
        self.max_parallel = max_parallel or default_parallelism()
        self.max_attempts = max_attempts
        self.retry_delay_seconds = retry_delay_seconds
        # > 0: long constant-rate sources are encoded in chunks of this length, as the operator
        # does with VIDEOFLIX_CHUNK_SECONDS (`videoflix_core.chunks.chunk_plan` decides).
        self.chunk_seconds = chunk_seconds
        # The transcoder's command (default: this interpreter's), as the operator's image is.
        self.entrypoint = list(entrypoint) if entrypoint else None
        threads = max(1, (os.cpu_count() or 1) // self.max_parallel)
        self.step_env = {"VIDEOFLIX_CPU_LIMIT": str(threads), **(step_env or {})}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._slots: asyncio.Semaphore | None = None
        self._transcodes: dict[int, _Transcode] = {}
        self._runners: dict[int, asyncio.Task[None]] = {}
        self._ready = threading.Event()
        # Steps holding a slot now, and the most ever at once (shows the bound is honoured).
        self.active_steps = 0
        self.peak_active_steps = 0
        # The latest transcoder subprocesses with their start and end (bounded: a long-running
        # server must not grow it for ever).
        self.process_runs: deque[ProcessRun] = deque(maxlen=1000)

    # ---- lifecycle ------------------------------------------------------------------------------

    def start(self, resume: bool = True) -> None:
        """Start the background loop and (by default) resume every unfinished transcode."""
        if self._thread is not None:
            return
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._run_loop, name="local-dispatcher", daemon=True)
        self._thread.start()
        self._ready.wait()
        if resume:
            self.resume()

    def _run_loop(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        self._slots = asyncio.Semaphore(self.max_parallel)
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop every running step (its subprocess group is killed); state files stay for resume."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return

        async def shutdown() -> None:
            runners = list(self._runners.values())
            for task in runners:
                task.cancel()
            await asyncio.gather(*runners, return_exceptions=True)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(timeout)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        self._loop = None
        self._thread = None
        self._ready.clear()

    def _call(self, fn: Callable[[], Any]) -> None:
        if self._loop is None:
            raise RuntimeError("the local dispatcher is not started")
        self._loop.call_soon_threadsafe(fn)

    def wait_idle(self, timeout: float = 600.0) -> bool:
        """Block until no transcode runs (for tests and the demo); False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._runners:
                return True
            time.sleep(0.1)
        return False

    # ---- the Dispatcher protocol ----------------------------------------------------------------

    def submit(self, video: Video) -> None:
        """Start (or restart for a new generation) the transcode of `video`; returns at once."""
        spec = spec_for(video, self.storage.bucket)
        self._call(lambda: self._begin(spec))

    def cancel(self, video_id: int) -> None:
        """Stop the transcode of a deleted video and remove everything under its prefix."""
        self._call(lambda: self._spawn(video_id, self._cancel(video_id)))

    def resume(self) -> int:
        """Re-submit every video still pending or processing (after a restart); returns how many."""
        with Session(self.engine) as db:
            videos = db.scalars(
                select(Video).where(
                    Video.processing_state.in_(
                        [ProcessingState.PENDING.value, ProcessingState.PROCESSING.value]
                    ),
                    Video.source_key.is_not(None),
                )
            ).all()
            specs = [spec_for(v, self.storage.bucket) for v in videos]
        for spec in specs:
            self._call(lambda spec=spec: self._begin(spec))  # type: ignore[misc]
        if specs:
            log.info("Resumed unfinished transcodes", extra={"count": len(specs)})
        return len(specs)

    # ---- inside the loop ------------------------------------------------------------------------

    def _spawn(self, video_id: int, coro: Any) -> None:
        previous = self._runners.get(video_id)

        async def chained() -> None:
            if previous is not None:
                previous.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await previous
            await coro

        task = asyncio.get_running_loop().create_task(chained(), name=f"video-{video_id}")
        self._runners[video_id] = task

        def done(t: asyncio.Task[None]) -> None:
            if self._runners.get(video_id) is t:
                del self._runners[video_id]
            if not t.cancelled() and t.exception() is not None:
                log.error("Transcode crashed", exc_info=t.exception(), extra={"video_id": video_id})

        task.add_done_callback(done)

    def _begin(self, spec: VideoTranscodeSpec) -> None:
        self._spawn(spec.video_id, self._transcode(spec))

    async def _cancel(self, video_id: int) -> None:
        self._transcodes.pop(video_id, None)
        self._state_file(video_id).unlink(missing_ok=True)
        removed = await asyncio.to_thread(self.storage.delete_prefix, video_prefix(video_id))
        log.info("Removed video storage", extra={"video_id": video_id, "objects": removed})

    async def _transcode(self, spec: VideoTranscodeSpec) -> None:
        job = _Transcode(spec=spec)
        saved = self._load_state(spec)
        if saved is None:
            # A new generation: outputs of an older one must not linger next to the new ones.
            await asyncio.to_thread(self._clear_outputs, spec)
        else:
            job.steps, job.status, job.done_indexes = saved
        self._transcodes[spec.video_id] = job
        try:
            while True:
                job.changed.clear()
                try:
                    agg = aggregate(
                        spec,
                        job.steps,
                        job.status,
                        now=utc_now(),
                        chunk_seconds=self.chunk_seconds,
                    )
                except Exception as exc:
                    # A result aggregate cannot use must end in `error`, never in a stuck row.
                    log.exception("Could not aggregate", extra={"video_id": spec.video_id})
                    agg = Aggregate(status=_failed_status(job.status, f"internal error: {exc}"))
                final = agg.status.phase in (Phase.SUCCEEDED, Phase.FAILED)
                intermediates = intermediates_prefix(spec, agg, job.status)
                if intermediates is not None:
                    # Nothing may still write there (a failure leaves steps running); deleted
                    # before the final status is saved, so a crash in between deletes again.
                    await _stop_tasks(job.tasks)
                    await asyncio.to_thread(self._delete_intermediates, spec, intermediates)
                job.status = agg.status
                await self._record(job, force=True)
                if final:
                    log.info(
                        "Finished transcode",
                        extra={"video_id": spec.video_id, "phase": agg.status.phase.value},
                    )
                    return
                recovered = False
                for step, rungs in agg.to_start.items():
                    if step in job.steps:
                        continue
                    # A chunks step stores no result: its indexes' exit codes are its verdict.
                    stored = (
                        None
                        if is_chunk_step(step)
                        else await asyncio.to_thread(self._stored_result, spec, step)
                    )
                    if stored is not None:
                        # It finished (an orphaned subprocess of a killed server, say) but was
                        # never recorded: its stored result stands, as the operator's rule says.
                        log.info(
                            "Recovered a step's result from storage",
                            extra={"video_id": spec.video_id, "step": step},
                        )
                        job.steps[step] = StepObservation(
                            name=step, succeeded=1, finished="Complete", result=stored
                        )
                        recovered = True
                        continue
                    job.steps[step] = StepObservation(name=step, suspended=True)
                    coro = (
                        self._chunks(job, step, rungs, agg.chunks)
                        if is_chunk_step(step)
                        else self._step(job, step, rungs, agg.chunks, agg.with_audio)
                    )
                    task = asyncio.get_running_loop().create_task(coro)
                    job.tasks.add(task)
                    task.add_done_callback(job.tasks.discard)
                if recovered:
                    self._save_state(job)
                    continue  # aggregate again: a recovered probe plans the renditions
                await job.changed.wait()
        finally:
            await _stop_tasks(job.tasks)
            if self._transcodes.get(spec.video_id) is job:
                del self._transcodes[spec.video_id]

    async def _run_process(
        self,
        job: _Transcode,
        step: str,
        command: str,
        args: list[str],
        *,
        index: int | None = None,
        on_start: Callable[[], None],
        on_end: Callable[[], None],
    ) -> StepOutcome:
        """One transcoder subprocess holding one of the `max_parallel` slots."""
        assert self._slots is not None
        spec = job.spec
        # One index's percent says little: a chunked rung counts its indexes (as the operator).
        live = not is_chunk_step(step)
        label = step.replace("/", "-") + ("" if index is None else f"-{index}")
        env = dict(self.step_env)
        if index is not None:
            env["JOB_COMPLETION_INDEX"] = str(index)  # what an Indexed Job's pod gets
        async with self._slots:
            self.active_steps += 1
            self.peak_active_steps = max(self.peak_active_steps, self.active_steps)
            started = time.monotonic()
            on_start()
            if live:
                job.running[step] = 0.0
            job.changed.set()

            async def progress(percent: float) -> None:
                job.running[step] = percent
                await self._record(job)

            scratch = self.scratch_dir / str(spec.video_id) / label
            try:
                return await run_step(
                    command,
                    args,
                    scratch_dir=scratch,
                    env=env,
                    cwd=self.storage.root,
                    on_progress=progress if live else None,
                    entrypoint=self.entrypoint,
                )
            finally:
                self.process_runs.append(ProcessRun(step, index, started, time.monotonic()))
                self.active_steps -= 1
                on_end()
                job.running.pop(step, None)
                await asyncio.to_thread(_remove_tree, scratch)

    async def _step(
        self,
        job: _Transcode,
        step: str,
        rungs: Sequence[Rung],
        chunks: Sequence[Chunk],
        with_audio: bool,
    ) -> None:
        """One step with retries, reported as a StepObservation like a Job would be."""
        spec = job.spec
        if is_chunked_step(step):
            command, args = chunked_step_args(step, spec, rungs, chunks, with_audio)
        else:
            command, args = step_args(step, spec, rungs[0] if rungs else None)
            args = [*args, "--result-to", result_key(spec, step)]
        failures = 0
        last: StepOutcome | None = None
        started_at: str | None = None
        while True:

            def running(failed: int = failures) -> None:
                nonlocal started_at
                started_at = started_at or utc_now()
                job.steps[step] = StepObservation(
                    name=step, active=1, failed=failed, started_at=started_at
                )

            last = await self._run_process(
                job, step, command, args, on_start=running, on_end=lambda: None
            )
            if last.exit_code == EXIT_OK:
                # The operator's rule for a finished step: the reported result, else the stored
                # one, else run it again (counted: an exit 0 without any result is a fault).
                stored = (
                    await asyncio.to_thread(self._stored_result, spec, step)
                    if needs_stored("Complete", last.result)
                    else None
                )
                decided = step_result("Complete", last.result, stored)
                if decided.decision == Decision.USE:
                    job.steps[step] = StepObservation(
                        name=step,
                        succeeded=1,
                        failed=failures,
                        finished="Complete",
                        started_at=started_at,
                        finished_at=utc_now(),
                        result=decided.result,
                    )
                    break
            failures += 1
            log.warning(
                "Transcoder step failed",
                extra={
                    "video_id": spec.video_id,
                    "step": step,
                    "attempt": failures,
                    "exit_code": last.exit_code,
                    "reason": last.message,
                },
            )
            if last.permanent_failure or failures >= self.max_attempts:
                job.steps[step] = StepObservation(
                    name=step,
                    failed=failures,
                    finished="Failed",
                    reason=None if last.permanent_failure else "BackoffLimitExceeded",
                    message=last.message,
                    started_at=started_at,
                    finished_at=utc_now(),
                    result=last.result if last.permanent_failure else None,
                )
                break
            job.steps[step] = StepObservation(
                name=step, failed=failures, started_at=started_at, suspended=True
            )
            job.changed.set()
            await asyncio.sleep(self.retry_delay_seconds * failures)
        self._save_state(job)
        job.changed.set()

    async def _chunks(
        self, job: _Transcode, step: str, rungs: Sequence[Rung], chunks: Sequence[Chunk]
    ) -> None:
        """A chunks step as an Indexed Job runs it: every index a subprocess of its own (with
        JOB_COMPLETION_INDEX) under the slots, a failed index retried alone within its own
        `max_attempts`, and one index out of retries stopping the others (maxFailedIndexes 0:
        the rung cannot be assembled)."""
        command, args = chunked_step_args(step, job.spec, rungs, chunks, with_audio=False)
        run = IndexedRun(total=len(chunks))
        run.done = {i for i in parse_indexes(job.done_indexes.pop(step, None)) if i < run.total}
        tasks = [
            asyncio.get_running_loop().create_task(self._index(job, step, run, i, command, args))
            for i in range(run.total)
            if i not in run.done
        ]
        try:
            for next_done in asyncio.as_completed(tasks):
                if not await next_done:
                    break
        finally:
            await _stop_tasks(set(tasks))
        run.finished_at = utc_now()
        job.steps[step] = indexed_observation(step, run)
        self._save_state(job)
        job.changed.set()

    async def _index(
        self,
        job: _Transcode,
        step: str,
        run: IndexedRun,
        index: int,
        command: str,
        args: list[str],
    ) -> bool:
        """One index with its retries; False once it failed for good. Success is the exit code
        alone, as for the Job controller (a chunk publishes its file before it exits 0)."""
        failures = 0

        def started() -> None:
            run.active += 1
            run.started_at = run.started_at or utc_now()
            job.steps[step] = indexed_observation(step, run)

        def ended() -> None:
            run.active -= 1

        while True:
            last = await self._run_process(
                job, step, command, args, index=index, on_start=started, on_end=ended
            )
            if last.exit_code == EXIT_OK:
                run.done.add(index)
                job.steps[step] = indexed_observation(step, run)
                job.changed.set()
                return True
            failures += 1
            run.failures += 1
            log.warning(
                "Chunk index failed",
                extra={
                    "video_id": job.spec.video_id,
                    "step": step,
                    "index": index,
                    "attempt": failures,
                    "exit_code": last.exit_code,
                    "reason": last.message,
                },
            )
            if last.permanent_failure or failures >= self.max_attempts:
                run.failed.add(index)
                detail = last.message or f"exit code {last.exit_code}"
                run.message = detail if last.permanent_failure else (
                    f"failed {failures} times: {detail}"
                )
                return False
            job.steps[step] = indexed_observation(step, run)
            job.changed.set()
            await asyncio.sleep(self.retry_delay_seconds * failures)

    async def _record(self, job: _Transcode, force: bool = False) -> None:
        """Write the outcome into the row (throttled while only the percent moves)."""
        now = time.monotonic()
        if not force and now - job.last_write < _PROGRESS_WRITE_SECONDS:
            return
        job.last_write = now
        if job.status is None:
            return
        result = outcome(job.spec, job.status)
        if not job.status.phase.is_final:
            # The live share is an estimate; a bar that jumps back looks broken, so never lower.
            job.progress_mark = max(job.progress_mark, refined_progress(job.status, job.running))
            result = replace(result, progress=job.progress_mark)
        self._save_state(job)
        # A busy database (SQLite under load) must not kill the transcode: progress writes are
        # skipped, writes that change the state are retried with backoff.
        attempts = 6 if force else 1
        for attempt in range(attempts):
            try:
                await asyncio.to_thread(self._write, result)
                return
            except SQLAlchemyError as exc:
                log.warning(
                    "Could not write the outcome",
                    extra={
                        "video_id": job.spec.video_id,
                        "attempt": attempt + 1,
                        "error": str(exc),
                    },
                )
                if attempt + 1 < attempts:
                    await asyncio.sleep(0.5 * 2**attempt)

    def _write(self, result: Outcome) -> None:
        with Session(self.engine) as db:
            if not write_outcome(db, result):
                log.info(
                    "Outcome not written: video gone or newer", extra={"video_id": result.video_id}
                )
            db.commit()

    # ---- persistence (the CR status of embedded mode) ------------------------------------------

    def _state_file(self, video_id: int) -> Path:
        return self.state_dir / f"{video_id}.json"

    def _save_state(self, job: _Transcode) -> None:
        finished = {k: asdict(o) for k, o in job.steps.items() if o.finished is not None}
        indexes = {
            # Not started again yet after a restart: still what the next restart needs.
            **job.done_indexes,
            **{
                k: o.completed_indexes
                for k, o in job.steps.items()
                if is_chunk_step(k) and o.finished is None and o.completed_indexes
            },
        }
        data = {
            "spec": job.spec.wire(),
            "steps": finished,
            "indexes": indexes,
            "status": job.status.wire() if job.status else None,
        }
        path = self._state_file(job.spec.video_id)
        tmp = path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(data))
            os.replace(tmp, path)
        except OSError:
            # Only resuming after a restart needs it; the transcode itself goes on.
            log.warning(
                "Could not save transcode state",
                exc_info=True,
                extra={"video_id": job.spec.video_id},
            )

    def _load_state(
        self, spec: VideoTranscodeSpec
    ) -> tuple[dict[str, StepObservation], VideoTranscodeStatus | None, dict[str, str]] | None:
        """Finished steps of this very spec from before a restart, and the done indexes of its
        unfinished chunks steps; None for anything else."""
        path = self._state_file(spec.video_id)
        try:
            data = json.loads(path.read_text())
            if VideoTranscodeSpec.model_validate(data["spec"]) != spec:
                return None
            steps = {k: StepObservation(**v) for k, v in data["steps"].items()}
            status = VideoTranscodeStatus.model_validate(data["status"]) if data["status"] else None
            indexes = {str(k): str(v) for k, v in (data.get("indexes") or {}).items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None
        # Steps that were running when the server stopped are absent from `steps`, so `aggregate`
        # lists them to start again, as the operator does for a Job that vanished unfinished.
        return steps, status, indexes

    def _stored_result(self, spec: VideoTranscodeSpec, step: str) -> dict[str, Any] | None:
        try:
            return parse_stored(self.storage.path(result_key(spec, step)).read_bytes())
        except OSError:
            return None

    def _delete_intermediates(self, spec: VideoTranscodeSpec, prefix: str) -> None:
        removed = self.storage.delete_prefix(prefix)
        # The folder of every chunked run goes too once empty (S3 has no folders to leave).
        with contextlib.suppress(OSError):
            self.storage.path(chunks_prefix(spec.video_id)).rmdir()
        log.info(
            "Removed chunk intermediates", extra={"video_id": spec.video_id, "objects": removed}
        )

    def _clear_outputs(self, spec: VideoTranscodeSpec) -> None:
        """Remove derived outputs under the video's prefix; sources are the API's to manage."""
        prefix = self.storage.path(video_prefix(spec.video_id))
        if not prefix.is_dir():
            return
        source_dir = self.storage.path(spec.source.key).parent
        for child in prefix.iterdir():
            if child == source_dir or child.name == "source":
                continue
            if child.is_dir():
                _remove_tree(child)
            else:
                child.unlink(missing_ok=True)


def _failed_status(previous: VideoTranscodeStatus | None, message: str) -> VideoTranscodeStatus:
    status = previous.model_copy() if previous is not None else VideoTranscodeStatus()
    status.phase = Phase.FAILED
    status.message = message[:500]
    return status


async def _stop_tasks(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel tasks and wait until they are over (their subprocesses stopped)."""
    pending = list(tasks)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


def _remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
