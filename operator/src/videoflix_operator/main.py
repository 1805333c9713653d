"""The operator process: `kopf run -m videoflix_operator.main --namespace NS --standalone
--liveness http://0.0.0.0:8080/healthz`, or `python -m videoflix_operator` (same, from settings).

Startup configures kopf (annotation prefix, finalizer name, no cluster-wide scanning), starts the
metrics server and the Job scheduler, and wires the shared reconciler the handlers use.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import kopf

from videoflix_operator import metrics, state
from videoflix_operator.config import get_settings
from videoflix_operator.database import Database
from videoflix_operator.handlers import videotranscodes  # noqa: F401  (registers handlers)
from videoflix_operator.k8s import LIST_PAGE, Kube
from videoflix_operator.objectstore import (
    ObjectStore,
    default_chain_has_credentials,
    store_wanted,
)
from videoflix_operator.plan import EventNote
from videoflix_operator.reconcile import Reconciler

log = logging.getLogger(__name__)
PREFIX = "videoflix.io"
FINALIZER = f"{PREFIX}/cleanup"
# The reconciler's process-wide loops: Job scheduler, resync safety net, live progress, the
# Jobs watch and the reconcile workers.
_loops: list[asyncio.Task[None]] = []


class LeanDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    """kopf's annotation diff-base, built without deep-copying what it throws away.

    kopf builds an object's "essence" on every watch event by deep-copying the whole body and
    then dropping `status` and most of `metadata` (managedFields…): measured as a third of the
    event loop's time at 300 CRs. The essence here is the same (spec, labels, annotations), the
    copy only of those.
    """

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None
    ) -> kopf.BodyEssence:
        if extra_fields:  # a handler on a status field: kopf's own way, whole body
            return super().build(body=body, extra_fields=extra_fields)
        meta = body.get("metadata") or {}
        lean = {k: v for k, v in body.items() if k not in ("metadata", "status")}
        lean["metadata"] = {
            k: meta[k] for k in ("name", "namespace", "labels", "annotations") if k in meta
        }
        return super().build(body=kopf.Body(cast(kopf.RawBody, lean)))


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    cfg = get_settings()
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = LeanDiffBaseStorage(
        prefix=PREFIX, key="last-handled-configuration"
    )
    # Namespaced and RBAC-minimal: no cluster-wide CRD/namespace scanning, no peering objects.
    settings.scanning.disabled = True
    settings.peering.standalone = True
    # Kubernetes Events for problems only: at INFO kopf posts two per handler run ("Handler …
    # succeeded", "Creation is processed"), most of a CR's API requests at scale. The story of a
    # transcode is told by the reconciler's own phase-transition Events.
    settings.posting.level = logging.WARNING
    # One INFO line per handler run and Job event is most of the log (and of the CPU) at scale;
    # kopf's warnings and errors still show, the reconciler logs what it did.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    settings.execution.max_workers = 20
    # Reconnect watches regularly: a half-dead TCP connection must not silence events forever.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    # The initial listing in pages: unpaged, a restart with 10,000 CRs parsed one huge reply.
    settings.watching.chunk_size = LIST_PAGE
    # A per-object worker keeps its last event's body while idle: at a restart every CR's
    # worker starts within seconds, so the default 5 s held every CR's full body at once.
    settings.queueing.idle_timeout = 0.5

    # The Kubernetes, S3 and database clients are blocking and run in threads: the default pool
    # (cores + 4) would queue reconciles behind each other's I/O.
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=cfg.io_threads, thread_name_prefix="videoflix-io")
    )
    metrics.start(cfg.metrics_port, cfg.max_running_jobs)
    # Twice the threads: kopf's own executor calls in too, and a full pool throws
    # connections away (a new TLS handshake each, measured as a tenth of the CPU).
    kube = Kube.from_environment(pool_size=2 * cfg.io_threads)

    def post_event(body: dict[str, Any], note: EventNote) -> None:
        kube.post_event(body, note.type, note.reason, note.message)

    reconciler = Reconciler(
        settings=cfg,
        kube=kube,
        store=ObjectStore(cfg) if store_wanted(cfg, default_chain_has_credentials) else None,
        database=Database(cfg.database_url) if cfg.database_url else None,
        post_event=post_event,
    )
    if reconciler.store is None:
        log.warning("No S3 settings or ambient credentials: cleanup leaves stored objects")
    if reconciler.database is None:
        log.warning("No VIDEOFLIX_DATABASE_URL: outcomes go to the CR status only")
    state.set_reconciler(reconciler)
    # Before kopf starts its watches (startup handlers come first), so before any reconcile.
    await reconciler.warm_up()
    _loops[:] = [
        asyncio.create_task(reconciler.run_scheduler(), name="videoflix-scheduler"),
        asyncio.create_task(reconciler.run_resync(), name="videoflix-resync"),
        asyncio.create_task(reconciler.run_progress(), name="videoflix-progress"),
        asyncio.create_task(reconciler.run_job_watch(), name="videoflix-job-watch"),
        *(
            asyncio.create_task(reconciler.run_worker(), name=f"videoflix-worker-{n}")
            for n in range(cfg.reconcile_workers)
        ),
    ]
    log.info(
        "Started the Videoflix operator in namespace %s (cap %d running Jobs)",
        cfg.namespace,
        cfg.max_running_jobs,
    )


@kopf.on.cleanup()
async def cleanup(**_: Any) -> None:
    for task in _loops:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    _loops.clear()
    rec = state._reconciler
    if rec is not None:
        rec.queue.close()
        rec.kube.close()
        if rec.database is not None:
            rec.database.close()
    state.set_reconciler(None)


@kopf.on.probe(id="scheduler")
def scheduler_alive(**_: Any) -> bool:
    """Part of the liveness answer: a dead scheduler would leave Jobs suspended forever, a dead
    resync loop would leave a missed event unnoticed."""
    dead = [t.get_name() for t in _loops if t.done()]
    if not _loops or dead:
        raise kopf.PermanentError(f"not running: {dead or 'the reconciler loops'}")
    return True


def run() -> None:
    cfg = get_settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    kopf.run(
        namespaces=[cfg.namespace],
        standalone=True,
        liveness_endpoint=f"http://0.0.0.0:{cfg.liveness_port}/healthz",
    )
