"""The reconcile loop's I/O shell: read the world, call the pure `plan()`, apply its actions.

One `Reconciler` per operator process, shared by every handler. Each CR is reconciled by at most one
task at a time (per-CR lock); triggers that arrive meanwhile are coalesced into one more run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from videoflix_core import storage
from videoflix_core.status import Outcome, live_progress, outcome, parse_progress, running_steps
from videoflix_core.transcode import ANNOTATION_PRIORITY, VideoTranscodeSpec, VideoTranscodeStatus

from videoflix_operator import metrics
from videoflix_operator.builders import CONTAINER, MANAGED_BY, Owner, step_kind
from videoflix_operator.config import OperatorSettings
from videoflix_operator.database import Database
from videoflix_operator.k8s import Kube
from videoflix_operator.objectstore import ObjectStore
from videoflix_operator.plan import (
    EventNote,
    Observed,
    is_finished,
    job_result,
    plan,
    progress_pods,
    select_releases,
    status_patch,
    step_key,
)

log = logging.getLogger(__name__)
Obj = dict[str, Any]
# Posts a Kubernetes Event on the CR body (kopf.event in production).
EventPoster = Callable[[Obj, EventNote], None]


class NotSynced(Exception):
    """The outcome could not reach the database yet: retried by the caller."""


def utcnow() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Reconciler:
    settings: OperatorSettings
    kube: Kube
    store: ObjectStore | None
    database: Database | None
    post_event: EventPoster
    _locks: dict[tuple[str, str], asyncio.Lock] = field(default_factory=dict)
    _again: set[tuple[str, str]] = field(default_factory=set)
    _written: dict[tuple[str, str], Outcome] = field(default_factory=dict)
    _results: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    # Last percent each running step printed, per CR: (spec hash, step key → percent).
    _live: dict[tuple[str, str], tuple[str | None, dict[str, float]]] = field(default_factory=dict)
    scheduler_wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    _requested: set[tuple[str, str]] = field(default_factory=set)
    # Namespaces with transcodes: the cap spans all of them (kopf may watch every namespace).
    _namespaces: set[str] = field(default_factory=set)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def request(self, namespace: str, name: str, delay: float = 0.5) -> None:
        """Reconcile soon, once for a burst of triggers: one Job change comes as several watch
        events (active, pod status, conditions), and one pass sees them all."""
        key = (namespace, name)
        if key in self._requested:
            return
        self._requested.add(key)

        async def later() -> None:
            await asyncio.sleep(delay)
            self._requested.discard(key)
            try:
                await self.reconcile(namespace, name)
            except Exception as exc:
                # Not retried here: the CR's resync timer picks it up (level-based, always safe).
                log.warning("Reconcile of %s failed (resync will retry): %s", name, exc)

        task = asyncio.create_task(later(), name=f"reconcile-{namespace}-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def is_synced(self, namespace: str, name: str) -> bool:
        return (namespace, name) in self._written

    async def reconcile(self, namespace: str, name: str) -> None:
        """Bring one CR's Jobs, status and videos row in line with its spec.

        The videos row is written before the CR status. Raises NotSynced when only the database
        write failed (status and Jobs are done), any other exception when the cluster could not be
        read or changed.
        """
        key = (namespace, name)
        self._namespaces.add(namespace)
        lock = self._locks.setdefault(key, asyncio.Lock())
        if lock.locked():
            self._again.add(key)  # the running pass may have read stale Jobs: run once more
            return
        async with lock:
            while True:
                self._again.discard(key)
                started = time.perf_counter()
                try:
                    await self._reconcile_once(namespace, name)
                except NotSynced as exc:
                    metrics.count_error(exc, database=True)
                    raise
                except Exception as exc:
                    metrics.count_error(exc)
                    raise
                finally:
                    metrics.RECONCILE_SECONDS.observe(time.perf_counter() - started)
                    metrics.reconciled()
                if key not in self._again:
                    break

    async def _reconcile_once(self, namespace: str, name: str) -> None:
        body = await self.kube.get_transcode(namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            self.forget(namespace, name)
            return
        try:
            spec = VideoTranscodeSpec.model_validate(body.get("spec") or {})
        except ValidationError as exc:
            # The CRD schema should have refused it; nothing sensible can be done with it.
            log.error("Ignored VideoTranscode with an invalid spec: %s", exc, extra={"name": name})
            return
        raw_status = body.get("status") or None
        previous = VideoTranscodeStatus.model_validate(raw_status) if raw_status else None
        owner = Owner(
            name=name,
            namespace=namespace,
            uid=body["metadata"]["uid"],
            created=str(body["metadata"].get("creationTimestamp") or ""),
        )

        jobs = await self.kube.jobs_of(namespace, name)
        results: dict[str, dict[str, Any] | None] = {}
        for job in jobs:
            job_name = job["metadata"]["name"]
            if not is_finished(job):
                continue
            # A finished Job's result never changes: read its pods once per process.
            if job_name not in self._results:
                pods = await self.kube.pods_of_job(namespace, job_name)
                self._results[job_name] = job_result(job, pods)
            results[job_name] = self._results[job_name]
        observed = Observed(
            jobs=jobs,
            results=results,
            previous=previous,
            generation=body["metadata"].get("generation"),
        )
        actions = plan(spec, owner, observed, self.settings, utcnow())
        # Job events only say which steps finished; the running steps' own percent (read by
        # refresh_progress) moves the bar in between, and it never moves back.
        live_hash, live = self._live.get((namespace, name), (None, {}))
        now_running = running_steps(actions.status)
        running = {
            k: v
            for k, v in live.items()
            if k in now_running and live_hash == actions.status.spec_hash  # not a superseded spec's
        }
        actions.status.progress = live_progress(actions.status, running, previous)

        for job_name in actions.delete_jobs:
            await self.kube.delete_job(namespace, job_name)
            log.info("Deleted superseded Job %s", job_name)
        if actions.delete_prefixes and self.store is not None:
            for prefix in actions.delete_prefixes:
                await self.store.delete_prefix(
                    spec.source.bucket, prefix, frozenset(actions.keep_keys)
                )
            log.info("Deleted superseded outputs of %s", name)
        for job_name in actions.reprioritize:
            await self.kube.annotate_job(
                namespace, job_name, {ANNOTATION_PRIORITY: str(spec.priority)}
            )
            self.scheduler_wakeup.set()
        created: set[str] = set()
        for manifest in actions.create:
            if await self.kube.create_job(namespace, manifest):
                created.add(manifest["metadata"]["name"])
                job_labels = manifest["metadata"]["labels"]
                metrics.JOBS_CREATED.labels(
                    step=step_kind(step_key(manifest) or ""),
                    rendition=job_labels.get("videoflix.io/rendition", ""),
                ).inc()
                log.info("Created Job %s", manifest["metadata"]["name"])
        if created:
            self.scheduler_wakeup.set()
        if any(is_finished(j) for j in jobs):
            self.scheduler_wakeup.set()

        # The row first, then the CR: the row is what users see, so once the CR says Succeeded
        # (what kubectl, alerts and tests read) the row already says ready. A failed row write
        # still lets the status through (the cluster view stays current) and is retried.
        unsynced: NotSynced | None = None
        try:
            await self._sync_database(namespace, name, outcome(spec, actions.status))
        except NotSynced as exc:
            unsynced = exc
        new_status = actions.status.wire()
        patch = status_patch(raw_status, new_status)
        if patch:  # unchanged status, no write: no watch event, no churn
            await self.kube.patch_transcode_status(namespace, name, patch)
        metrics.observe_transitions(previous, actions.status)
        metrics.track(f"{namespace}/{name}", actions.status, owner.created)
        for note in actions.events:
            # A 409 means an earlier pass (or process) created it and said so already.
            if note.reason == "CreatedJob" and note.message.rsplit(" ", 1)[-1] not in created:
                continue
            self.post_event(body, note)
        if unsynced is not None:
            raise unsynced

    async def refresh_progress(self, namespace: str, name: str, spec_hash: str | None) -> None:
        """Read the log tail of each running step pod; reconcile when a percent moved.

        Cheap: one pod list and one small log read (≤ 10 lines, ≤ 4 KiB) per running pod.
        """
        key = (namespace, name)
        readings: dict[str, float] = {}
        for pod_name, step in progress_pods(
            await self.kube.pods_of_transcode(namespace, name), spec_hash
        ):
            percent = parse_progress(await self.kube.pod_log_tail(namespace, pod_name, CONTAINER))
            if percent is not None:
                readings[step] = max(percent, readings.get(step, 0.0))
        if (spec_hash, readings) == self._live.get(key):
            return
        self._live[key] = (spec_hash, readings)
        await self.reconcile(namespace, name)

    async def _sync_database(self, namespace: str, name: str, result: Outcome) -> None:
        key = (namespace, name)
        if self.database is None or self._written.get(key) == result:
            return
        try:
            written = await self.database.write(result)
        except Exception as exc:
            self._written.pop(key, None)
            log.warning("Could not write the outcome of %s to the database: %s", name, exc)
            raise NotSynced(str(exc)) from exc
        if not written:
            log.info("Skipped the outcome of %s: videos row gone or newer generation", name)
        self._written[key] = result

    def forget(self, namespace: str, name: str) -> None:
        """Drop what this process remembers about a CR that is gone."""
        self._written.pop((namespace, name), None)
        self._live.pop((namespace, name), None)
        lock = self._locks.get((namespace, name))
        if lock is not None and not lock.locked():
            del self._locks[(namespace, name)]
        for job_name in [j for j in self._results if j.startswith(f"{name}-")]:
            del self._results[job_name]
        metrics.track(f"{namespace}/{name}", None)

    async def cleanup(self, namespace: str, name: str, spec: VideoTranscodeSpec) -> bool:
        """Finalizer work: stop the Jobs, then delete every object under the video's prefix.

        False while pods are still running (they could write after the delete): retry later.
        """
        for job in await self.kube.jobs_of(namespace, name):
            await self.kube.delete_job(namespace, job["metadata"]["name"])
        pods = await self.kube.pods_of_transcode(namespace, name)
        if any((p.get("status") or {}).get("phase") in ("Pending", "Running") for p in pods):
            return False
        if self.store is None:
            log.warning("No S3 settings: left the stored objects of %s in place", name)
        else:
            deleted = await self.store.delete_prefix(
                spec.source.bucket, storage.video_prefix(spec.video_id)
            )
            log.info("Deleted %d stored objects of %s", deleted, name)
        self.forget(namespace, name)
        return True

    async def schedule(self) -> None:
        """Release suspended Jobs up to the cap, by priority then age (one pass)."""
        jobs: list[Obj] = []
        for namespace in sorted(self._namespaces | {self.settings.namespace}):
            jobs += await self.kube.list_jobs(
                namespace, f"app.kubernetes.io/managed-by={MANAGED_BY}"
            )
        releases, running, queued = select_releases(jobs, self.settings.max_running_jobs)
        for namespace, job_name in releases:
            await self.kube.release_job(namespace, job_name)
            log.info("Released Job %s", job_name)
        metrics.RUNNING_JOBS.set(running + len(releases))
        metrics.QUEUE_DEPTH.set(queued - len(releases))

    async def run_scheduler(self) -> None:
        """The one place that unsuspends Jobs, so the cap holds without races between CRs."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self.scheduler_wakeup.wait(), timeout=self.settings.scheduler_interval_seconds
                )
            self.scheduler_wakeup.clear()
            try:
                await self.schedule()
            except asyncio.CancelledError:
                raise
            except Exception:
                metrics.RECONCILE_ERRORS.labels(kind="scheduler").inc()
                log.exception("Scheduling pass failed; retrying")
                await asyncio.sleep(1)
