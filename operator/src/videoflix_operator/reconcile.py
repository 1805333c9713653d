"""The reconcile loop's I/O shell: read the world, call the pure `plan()`, apply its actions.

One `Reconciler` per operator process, shared by every handler. Each CR is reconciled by at most one
task at a time (per-CR lock); triggers that arrive meanwhile are coalesced into one more run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from videoflix_core import storage
from videoflix_core.results import (
    Decision,
    Source,
    needs_stored,
    parse_stored,
    step_recorded,
    step_result,
)
from videoflix_core.status import (
    Outcome,
    is_chunk_step,
    live_progress,
    outcome,
    parse_progress,
    running_steps,
    spec_hash,
)
from videoflix_core.transcode import (
    ANNOTATION_PRIORITY,
    LABEL_SPEC_HASH,
    LABEL_TRANSCODE,
    VideoTranscodeSpec,
    VideoTranscodeStatus,
)

from videoflix_operator import faults, metrics
from videoflix_operator.builders import CONTAINER, Owner, step_kind
from videoflix_operator.config import OperatorSettings
from videoflix_operator.database import Database, RowView
from videoflix_operator.k8s import Kube, WatchExpired
from videoflix_operator.objectstore import ObjectStore
from videoflix_operator.plan import (
    Actions,
    EventNote,
    Observed,
    admit_on_create,
    is_finished,
    job_pods,
    job_result,
    job_verdict,
    owned_pods,
    plan,
    progress_pods,
    select_releases,
    status_patch,
    step_key,
)
from videoflix_operator.workqueue import WorkQueue

log = logging.getLogger(__name__)
Obj = dict[str, Any]
# Posts a Kubernetes Event on the CR body (kopf.event in production).
EventPoster = Callable[[Obj, EventNote], None]


class NotSynced(Exception):
    """The outcome could not reach the database yet: retried by the caller."""


# A failed reconcile is retried: a database outage soon, a cluster hiccup a little later.
DB_RETRY_SECONDS = 5.0
# A Job event's reconcile waits this long for the rest of the change's events.
JOB_EVENT_DELAY_SECONDS = 0.5
CLUSTER_RETRY_SECONDS = 10.0

# Reconciles a resync or progress pass runs at once: enough to use the I/O threads, few enough
# that event-driven reconciles are not queued behind a 10,000-CR pass.
RESYNC_CONCURRENCY = 8

# What a video's row says when its transcode resource is deleted under it (`kubectl delete vt`).
RESOURCE_DELETED = "Transcode resource deleted; retry to start the transcode again"


@dataclass(frozen=True)
class Teardown:
    """What the finalizer does besides stopping the Jobs."""

    wipe_storage: bool  # delete everything under the video's prefix
    fail_row: bool  # mark the row `error` (RESOURCE_DELETED) so staff see it and can retry


def teardown(has_database: bool, row: RowView | None, generation: int) -> Teardown:
    """The finalizer's choice. The media belong to the videos row, not to the CR:

    - no row (the video was deleted, or the CR is an orphan): wipe the video's storage;
    - a row: keep every object (a ready video keeps playing; a newer generation's source and
      outputs are not this CR's to delete), and if the row still waits for this generation, say
      why it stopped instead of leaving it `processing` forever (retry re-creates the CR);
    - no database configured: nothing says the video lives on, so wipe (the old behaviour).
    """
    if not has_database or row is None:
        return Teardown(wipe_storage=True, fail_row=False)
    return Teardown(
        wipe_storage=False, fail_row=row.generation == generation and not row.state.is_final
    )


def needs_results(
    previous: VideoTranscodeStatus | None, spec: VideoTranscodeSpec, jobs: list[Obj]
) -> bool:
    """Whether finished Jobs' results must be read: not for a finished CR of this spec whose Jobs
    are all done, whose status already holds every step's outcome (aggregate keeps final steps
    from it), so its results need no cache and its pods may be long gone."""
    if previous is None or not previous.phase.is_final or previous.spec_hash != spec_hash(spec):
        return True
    return not all(is_finished(j) for j in jobs)


def utcnow() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def wants_resync(body: Mapping[str, Any], synced: bool) -> bool:
    """The safety net's choice for one CR: all but a finished one whose outcome this process
    already wrote (those cost nothing however many there are)."""
    phase = (body.get("status") or {}).get("phase")
    return not (synced and phase in ("Succeeded", "Failed"))


@dataclass
class Reconciler:
    settings: OperatorSettings
    kube: Kube
    store: ObjectStore | None
    database: Database | None
    post_event: EventPoster
    # Caches stay bounded: locks live only while a pass runs, results and live percents only
    # until the CR is finished and synced, and `_written` keeps the most recent `cache_size` CRs
    # (an evicted one costs one more reconcile on its next resync, nothing else).
    _locks: dict[tuple[str, str], asyncio.Lock] = field(default_factory=dict)
    _again: set[tuple[str, str]] = field(default_factory=set)
    _written: OrderedDict[tuple[str, str], Outcome] = field(default_factory=OrderedDict)
    _results: dict[str, dict[str, Any] | None] = field(default_factory=dict)  # found ones only
    # Last percent each running step printed, per CR: (spec hash, step key → percent).
    _live: dict[tuple[str, str], tuple[str | None, dict[str, float]]] = field(default_factory=dict)
    scheduler_wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    queue: WorkQueue = field(default_factory=WorkQueue)
    # Namespaces with transcodes: the cap spans all of them (kopf may watch every namespace).
    _namespaces: set[str] = field(default_factory=set)
    # Pods of Jobs being created released whose answer is not in the Job cache yet: counted as
    # running by every cap decision, so two reconciles (or one and the scheduler) deciding while
    # a create is in flight cannot both take the last slot.
    _reserved: dict[tuple[str, str], int] = field(default_factory=dict)
    # Where the Jobs watch looks (None: every namespace) and the version it resumes from.
    _job_scope: str | None = None
    _job_version: str = ""

    def request(self, namespace: str, name: str, delay: float = 0.0) -> None:
        """Reconcile after `delay` seconds (or sooner, if asked so meanwhile), by a worker."""
        self.queue.add_after((namespace, name), delay)
        metrics.RECONCILE_QUEUE.set(len(self.queue))

    async def warm_up(self) -> None:
        """Fill the Job cache before the first reconcile: a restarted operator must not plan
        (count the cap, look for its Jobs) against an empty cache. Every namespace's Jobs when
        the operator may list them (`--all-namespaces` under a ClusterRole), else its own
        namespace's (a Role); the Jobs watch (`run_job_watch`) goes on from there."""
        self._job_scope, self._job_version = await self.kube.list_visible_jobs(
            self.settings.namespace
        )
        log.info("Listed %d managed Jobs", len(self.kube.jobs))
        self.kube.jobs.take_changed_owners()  # kopf's resume handlers queue every CR anyway

    async def run_job_watch(self) -> None:
        """Keep the Job cache current from one watch, resumed where it ended; when its version
        expired (410), list again and reconcile the CRs whose Jobs changed meanwhile."""
        while True:
            try:
                self._job_version = await self.kube.watch_jobs(
                    self._job_scope, self._job_version, self.job_event
                )
            except asyncio.CancelledError:
                raise
            except WatchExpired:
                log.info("The Jobs watch expired; listing the Jobs again")
                await self._relist_after_gap()
            except Exception as exc:
                metrics.RECONCILE_ERRORS.labels(kind="watch").inc()
                log.warning("The Jobs watch failed (resuming in 1 s): %s", exc)
                await asyncio.sleep(1)
                with contextlib.suppress(Exception):
                    await self._relist_after_gap()

    async def _relist_after_gap(self) -> None:
        _, self._job_version = await self.kube.list_jobs(self._job_scope)
        for namespace, name in self.kube.jobs.take_changed_owners():
            self.request(namespace, name)
        self.scheduler_wakeup.set()  # a Job may have finished or gone meanwhile

    def job_event(self, kind: str, job: Obj) -> None:
        """One watch event of a managed Job: into the cache, and its CR queued when a reconcile
        would see a difference (most Job events change nothing a decision reads: readiness
        counts, our own release echoed back)."""
        meta = job["metadata"]
        namespace, name = str(meta["namespace"]), str(meta["name"])
        owner = meta["labels"].get(LABEL_TRANSCODE)
        self.kube.jobs.put(job)
        # Asked on every event (just recorded), so no flag outlives it.
        changed = self.kube.jobs.take_changed(namespace, name)
        if kind == "DELETED":
            self.kube.jobs.remove(namespace, name)
            self.scheduler_wakeup.set()  # a slot may have freed up
        elif not changed:
            return
        if owner:
            # A moment's delay: one Job change comes as several events, one pass sees them all.
            self.request(namespace, str(owner), delay=JOB_EVENT_DELAY_SECONDS)

    async def run_worker(self) -> None:
        """One of `settings.reconcile_workers`: reconciles queued CRs one at a time; a failed
        pass is queued again after a pause (the database's shorter than the cluster's)."""
        while True:
            key = await self.queue.get()
            metrics.RECONCILE_QUEUE.set(len(self.queue))
            try:
                await self.reconcile(*key)
            except NotSynced as exc:
                log.warning("Reconcile of %s: database not reachable, retrying: %s", key[1], exc)
                self.queue.add_after(key, DB_RETRY_SECONDS)
            except Exception as exc:
                log.warning("Reconcile of %s failed, retrying: %s", key[1], exc)
                self.queue.add_after(key, CLUSTER_RETRY_SECONDS)
            finally:
                self.queue.done(key)

    def is_synced(self, namespace: str, name: str) -> bool:
        # Without a database there is nothing to sync: a finished CR needs no resync pass.
        return self.database is None or (namespace, name) in self._written

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
        if self._locks.get(key) is lock:  # no await since the release: nobody else holds it
            del self._locks[key]

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
        results, rerun = await self._finished_results(namespace, spec, previous, jobs)
        observed = Observed(
            jobs=jobs,
            results=results,
            previous=previous,
            generation=body["metadata"].get("generation"),
            rerun=frozenset(rerun),
        )
        actions = plan(spec, owner, observed, self.settings, utcnow())
        actions = await self._recover_before_start(spec, owner, observed, actions)
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
            faults.crash_point(faults.AFTER_PREFIX_DELETE)
        for job_name in actions.reprioritize:
            await self.kube.annotate_job(
                namespace, job_name, {ANNOTATION_PRIORITY: str(spec.priority)}
            )
            self.scheduler_wakeup.set()
        created = await self._create_jobs(namespace, actions.create)
        if created:
            self.scheduler_wakeup.set()
        if any(is_finished(j) for j in jobs):
            self.scheduler_wakeup.set()

        # The row first, then the CR: the row is what users see, so once the CR says Succeeded
        # (what kubectl, alerts and tests read) the row already says ready. A failed row write
        # still lets the status through (the cluster view stays current) and is retried.
        unsynced: NotSynced | None = None
        try:
            if await self._sync_database(namespace, name, outcome(spec, actions.status)):
                # The videos row is gone (a delete whose CR cancel failed): nobody will ever
                # delete this CR; delete it now and let the finalizer clean the storage.
                log.warning("Deleting orphan %s: its videos row is gone", name)
                await self.kube.delete_transcode(namespace, name, owner.uid)
                return
        except NotSynced as exc:
            unsynced = exc
        new_status = actions.status.wire()
        patch = status_patch(raw_status, new_status)
        if patch:  # unchanged status, no write: no watch event, no churn
            faults.crash_point(faults.BEFORE_STATUS_PATCH)
            await self.kube.patch_transcode_status(namespace, name, patch)
        metrics.observe_transitions(previous, actions.status)
        metrics.track(f"{namespace}/{name}", actions.status, owner.created)
        for note in actions.events:
            self.post_event(body, note)
        if unsynced is not None:
            raise unsynced
        if actions.status.phase.is_final:
            self._prune(namespace, name)

    async def _create_jobs(self, namespace: str, manifests: list[Obj]) -> set[str]:
        """Create the planned Jobs, released when `admit_on_create` finds room under the cap
        (decided and reserved before the first await), else suspended for the scheduler."""
        admitted = admit_on_create(
            manifests,
            self.kube.jobs.load(),
            self.settings.max_running_jobs,
            sum(self._reserved.values()),
        )
        for manifest in manifests:
            if manifest["metadata"]["name"] in admitted:
                self._reserved[(namespace, manifest["metadata"]["name"])] = job_pods(manifest)
        created: set[str] = set()
        try:
            for manifest in manifests:
                job_name = manifest["metadata"]["name"]
                if job_name in admitted:
                    manifest = {**manifest, "spec": {**manifest["spec"], "suspend": False}}
                try:
                    made = await self.kube.create_job(namespace, manifest)
                finally:  # the cache now holds the answer (or it failed): no longer reserved
                    self._reserved.pop((namespace, job_name), None)
                if not made:
                    continue
                created.add(job_name)
                job_labels = manifest["metadata"]["labels"]
                metrics.JOBS_CREATED.labels(
                    step=step_kind(step_key(manifest) or ""),
                    rendition=job_labels.get("videoflix.io/rendition", ""),
                ).inc()
                log.info("Created Job %s%s", job_name, "" if job_name in admitted else " (queued)")
                faults.crash_point(faults.AFTER_JOB_CREATE)
        finally:
            for job_name in admitted:  # a failed create leaves the rest unreserved too
                self._reserved.pop((namespace, job_name), None)
        return created

    async def _finished_results(
        self,
        namespace: str,
        spec: VideoTranscodeSpec,
        previous: VideoTranscodeStatus | None,
        jobs: list[Obj],
    ) -> tuple[dict[str, dict[str, Any] | None], set[str]]:
        """(result per finished Job, Jobs to re-run) by `videoflix_core.results.step_result`:
        the termination message, else the stored result object, else re-run. Only what was found
        is cached (a miss is asked again next pass); steps the status already records are not
        read at all (their pods may be long gone)."""
        results: dict[str, dict[str, Any] | None] = {}
        rerun: set[str] = set()
        if not needs_results(previous, spec, jobs):
            return results, rerun
        pods: list[Obj] | None = None  # listed once for every Job read in this pass
        current = spec_hash(spec)
        for job in jobs:
            job_name = job["metadata"]["name"]
            key = step_key(job)
            if (
                not is_finished(job)
                or key is None
                or (job["metadata"].get("labels") or {}).get(LABEL_SPEC_HASH) != current
                or step_recorded(previous, current, key)
                # A completed Indexed Job's verdict and completedIndexes say it all; its pods'
                # results (one per index) are not read, so a pod-less one is never re-run. A
                # failed one's last failed pod gives the reason.
                or (is_chunk_step(key) and job_verdict(job) == "Complete")
            ):
                continue
            if job_name in self._results:  # a finished Job's result never changes
                results[job_name] = self._results[job_name]
                continue
            verdict = job_verdict(job)
            if pods is None:
                transcode = job["metadata"]["labels"][LABEL_TRANSCODE]
                pods = await self.kube.pods_of_transcode(namespace, transcode)
            message = job_result(job, owned_pods(job, pods))
            stored = (
                await self._stored_result(spec, key) if needs_stored(verdict, message) else None
            )
            decided = step_result(verdict, message, stored)
            if decided.decision == Decision.RERUN:
                log.warning("Re-running Job %s: its result is lost (pods and object)", job_name)
                rerun.add(job_name)
                continue
            if decided.source == Source.STORED:
                log.info("Read the result of Job %s from storage: its pods are gone", job_name)
            results[job_name] = dict(decided.result) if decided.result is not None else None
            if decided.result is not None:
                self._results[job_name] = results[job_name]
        return results, rerun

    async def _stored_result(self, spec: VideoTranscodeSpec, step: str) -> dict[str, Any] | None:
        if self.store is None:
            return None
        key = storage.step_result_key(
            spec.video_id, spec.transcode_generation, spec_hash(spec), step
        )
        return parse_stored(await self.store.get(spec.source.bucket, key))

    async def _recover_before_start(
        self, spec: VideoTranscodeSpec, owner: Owner, observed: Observed, actions: Actions
    ) -> Actions:
        """Before a step's Job is (re)created, take its stored result if it has one: its Job
        finished and was deleted (TTL) before this process recorded it. Plans again with what
        was found (a recovered probe plans the renditions, whose results are looked up next)."""
        if self.store is None:
            return actions
        looked: set[str] = set()
        recovered: dict[str, Mapping[str, Any]] = dict(observed.recovered)
        while True:
            wanted = [
                key
                for key in (step_key(m) for m in actions.create)
                if key is not None and key not in looked
            ]
            found = False
            for key in wanted:
                looked.add(key)
                try:
                    stored = await self._stored_result(spec, key)
                except Exception as exc:  # unknown is not absent, but re-running is always safe
                    log.warning("Could not read the stored result of %s: %s", key, exc)
                    continue
                if stored is not None:
                    log.info("Recovered the result of step %s of %s from storage", key, owner.name)
                    recovered[key] = stored
                    found = True
            if not found:
                return actions
            observed = replace(observed, recovered=recovered)
            actions = plan(spec, owner, observed, self.settings, utcnow())

    async def refresh_progress(
        self, namespace: str, name: str, spec_hash: str | None, pods: list[Obj]
    ) -> None:
        """Read the log tail of each of the transcode's running step pods (`pods`); reconcile
        when a percent moved. One small log read (≤ 10 lines, ≤ 4 KiB) per running pod."""
        key = (namespace, name)
        readings: dict[str, float] = {}
        for pod_name, step in progress_pods(pods, spec_hash):
            percent = parse_progress(await self.kube.pod_log_tail(namespace, pod_name, CONTAINER))
            if percent is not None:
                readings[step] = max(percent, readings.get(step, 0.0))
        if (spec_hash, readings) == self._live.get(key):
            return
        self._live[key] = (spec_hash, readings)
        await self.reconcile(namespace, name)

    async def _sync_database(self, namespace: str, name: str, result: Outcome) -> bool:
        """Write the outcome unless already written; True when the videos row does not exist."""
        key = (namespace, name)
        if self.database is None or self._written.get(key) == result:
            if key in self._written:
                self._written.move_to_end(key)
            return False
        try:
            written = await self.database.write(result)
            faults.crash_point(faults.AFTER_DATABASE_WRITE)
        except Exception as exc:
            self._written.pop(key, None)
            log.warning("Could not write the outcome of %s to the database: %s", name, exc)
            raise NotSynced(str(exc)) from exc
        if not written:
            if await self._row(result.video_id) is None:
                self._written.pop(key, None)
                return True
            log.info("Skipped the outcome of %s: the videos row has a newer generation", name)
        self._written[key] = result
        self._written.move_to_end(key)
        while len(self._written) > self.settings.cache_size:
            self._written.popitem(last=False)
        return False

    async def _row(self, video_id: int) -> RowView | None:
        assert self.database is not None
        try:
            return await self.database.row(video_id)
        except Exception as exc:
            raise NotSynced(str(exc)) from exc

    def _prune(self, namespace: str, name: str) -> None:
        """Drop what a finished, synced CR no longer needs (its status holds the results)."""
        self._live.pop((namespace, name), None)
        for job_name in [j for j in self._results if j.startswith(f"{name}-")]:
            del self._results[job_name]

    def forget(self, namespace: str, name: str) -> None:
        """Drop what this process remembers about a CR that is gone."""
        self._written.pop((namespace, name), None)
        self._prune(namespace, name)
        metrics.track(f"{namespace}/{name}", None)

    async def cleanup(self, namespace: str, name: str, spec: VideoTranscodeSpec) -> bool:
        """Finalizer work: stop the Jobs, then what `teardown` chose for the row and storage.

        False while pods are still running (they could write after the delete): retry later.
        """
        for job in await self.kube.jobs_of(namespace, name):
            await self.kube.delete_job(namespace, job["metadata"]["name"])
        faults.crash_point(faults.CLEANUP_AFTER_JOBS_DELETED)
        pods = await self.kube.pods_of_transcode(namespace, name)
        if any((p.get("status") or {}).get("phase") in ("Pending", "Running") for p in pods):
            return False
        row = await self.database.row(spec.video_id) if self.database is not None else None
        action = teardown(self.database is not None, row, spec.transcode_generation)
        if action.fail_row:
            assert self.database is not None
            await self.database.fail_unfinished(
                spec.video_id, spec.transcode_generation, RESOURCE_DELETED
            )
            log.warning("%s deleted under its live videos row: marked it error", name)
        if not action.wipe_storage:
            log.info("Kept the stored objects of %s: its videos row still exists", name)
        elif self.store is None:
            log.warning("No S3 settings: left the stored objects of %s in place", name)
        else:
            deleted = await self.store.delete_prefix(
                spec.source.bucket, storage.video_prefix(spec.video_id)
            )
            log.info("Deleted %d stored objects of %s", deleted, name)
        faults.crash_point(faults.CLEANUP_AFTER_STORAGE)
        self.forget(namespace, name)
        return True

    async def schedule(self) -> None:
        """Release suspended Jobs up to the cap, by priority then age (one pass).

        Reads the watch-fed Job cache, not the API server: a pass costs no request unless it
        releases something, however many Jobs exist.
        """
        releases, running, queued = select_releases(
            self.kube.unfinished_jobs(),
            self.settings.max_running_jobs,
            sum(self._reserved.values()),
        )
        # Concurrently: a freed batch of slots is filled in one round trip, not one per Job.
        await asyncio.gather(*(self.kube.release_job(ns, job) for ns, job in releases))
        for _, job_name in releases:
            log.info("Released Job %s", job_name)
        metrics.RUNNING_JOBS.set(running + len(releases))
        metrics.QUEUE_DEPTH.set(queued - len(releases))

    async def run_scheduler(self) -> None:
        """The one place that unsuspends queued Jobs; new Jobs start released only through
        `admit_on_create`, and both count the reserved slots, so the cap holds between CRs."""
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

    async def resync(self) -> int:
        """One pass of the safety net for missed events and database outages (level-based, so
        always safe): the Job cache is re-listed, then every CR `wants_resync` is reconciled.

        One process-wide loop over paged LISTs instead of a kopf timer per CR: a timer makes
        kopf keep a task and the full body of every CR in memory for the CR's whole life.
        Returns the CRs reconciled.
        """
        namespaces = sorted(self._namespaces | {self.settings.namespace})
        await self.kube.relist_jobs(namespaces)
        limit = asyncio.Semaphore(RESYNC_CONCURRENCY)

        async def one(namespace: str, name: str) -> None:
            async with limit:
                try:
                    await self.reconcile(namespace, name)
                except Exception as exc:  # the next pass retries; the others go on
                    log.warning("Resync of %s failed: %s", name, exc)

        done = 0
        for namespace in namespaces:
            async for page in self.kube.transcode_pages(namespace):
                due = [
                    str(b["metadata"]["name"])
                    for b in page
                    if wants_resync(b, self.is_synced(namespace, str(b["metadata"]["name"])))
                ]
                await asyncio.gather(*(one(namespace, name) for name in due))
                done += len(due)
        return done

    async def run_resync(self) -> None:
        while True:
            await asyncio.sleep(self.settings.resync_seconds)
            try:
                await self.resync()
            except asyncio.CancelledError:
                raise
            except Exception:
                metrics.RECONCILE_ERRORS.labels(kind="resync").inc()
                log.exception("Resync pass failed; the next one retries")

    async def refresh_all_progress(self) -> None:
        """Live progress of every transcode with a released, unfinished Job (from the cache).

        One pod listing per namespace for all of them (the running pods, split by their
        transcode label), not one per transcode: a thousand transcodes in flight cost one LIST
        per tick, not a thousand.
        """
        owners = self.kube.jobs.running_owners()
        running: dict[tuple[str, str], list[Obj]] = defaultdict(list)
        for namespace in {ns for ns, _ in owners}:
            for pod in await self.kube.running_pods(namespace):
                transcode = (pod["metadata"].get("labels") or {}).get(LABEL_TRANSCODE)
                running[(namespace, str(transcode))].append(pod)
        limit = asyncio.Semaphore(RESYNC_CONCURRENCY)

        async def one(namespace: str, name: str, spec_hash: str | None) -> None:
            async with limit:
                try:
                    pods = running.get((namespace, name), [])
                    await self.refresh_progress(namespace, name, spec_hash, pods)
                except Exception as exc:  # cosmetic: the next tick tries again
                    log.debug("Live progress of %s not refreshed: %s", name, exc)

        await asyncio.gather(*(one(ns, name, h) for (ns, name), h in owners.items()))

    async def run_progress(self) -> None:
        while True:
            await asyncio.sleep(self.settings.progress_seconds)
            with contextlib.suppress(Exception):
                await self.refresh_all_progress()
