"""The operator process: `kopf run -m videoflix_operator.main --namespace NS --standalone
--liveness http://0.0.0.0:8080/healthz`, or `python -m videoflix_operator` (same, from settings).

Startup configures kopf (annotation prefix, finalizer name, no cluster-wide scanning), starts the
metrics server and the Job scheduler, and wires the shared reconciler the handlers use.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import kopf

from videoflix_operator import metrics, state
from videoflix_operator.config import get_settings
from videoflix_operator.database import Database
from videoflix_operator.handlers import jobs, videotranscodes  # noqa: F401  (registers handlers)
from videoflix_operator.k8s import Kube
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
_scheduler: asyncio.Task[None] | None = None


def _post_event(body: dict[str, Any], note: EventNote) -> None:
    kopf.event(cast(kopf.Body, body), type=note.type, reason=note.reason, message=note.message)


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    global _scheduler
    cfg = get_settings()
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=PREFIX, key="last-handled-configuration"
    )
    # Namespaced and RBAC-minimal: no cluster-wide CRD/namespace scanning, no peering objects.
    settings.scanning.disabled = True
    settings.peering.standalone = True
    settings.posting.level = logging.INFO
    settings.execution.max_workers = 20
    # Reconnect watches regularly: a half-dead TCP connection must not silence events forever.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330

    # The Kubernetes, S3 and database clients are blocking and run in threads: the default pool
    # (cores + 4) would queue reconciles behind each other's I/O.
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=cfg.io_threads, thread_name_prefix="videoflix-io")
    )
    metrics.start(cfg.metrics_port, cfg.max_running_jobs)
    reconciler = Reconciler(
        settings=cfg,
        kube=Kube.from_environment(pool_size=cfg.io_threads),
        store=ObjectStore(cfg) if store_wanted(cfg, default_chain_has_credentials) else None,
        database=Database(cfg.database_url) if cfg.database_url else None,
        post_event=_post_event,
    )
    if reconciler.store is None:
        log.warning("No S3 settings or ambient credentials: cleanup leaves stored objects")
    if reconciler.database is None:
        log.warning("No VIDEOFLIX_DATABASE_URL: outcomes go to the CR status only")
    state.set_reconciler(reconciler)
    _scheduler = asyncio.create_task(reconciler.run_scheduler(), name="videoflix-scheduler")
    log.info(
        "Started the Videoflix operator in namespace %s (cap %d running Jobs)",
        cfg.namespace,
        cfg.max_running_jobs,
    )


@kopf.on.cleanup()
async def cleanup(**_: Any) -> None:
    if _scheduler is not None:
        _scheduler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await _scheduler
    rec = state._reconciler
    if rec is not None:
        rec.kube.close()
        if rec.database is not None:
            rec.database.close()
    state.set_reconciler(None)


@kopf.on.probe(id="scheduler")
def scheduler_alive(**_: Any) -> bool:
    """Part of the liveness answer: a dead scheduler would leave Jobs suspended forever."""
    if _scheduler is None or _scheduler.done():
        raise kopf.PermanentError("the Job scheduler is not running")
    return True


def run() -> None:
    cfg = get_settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    kopf.run(
        namespaces=[cfg.namespace],
        standalone=True,
        liveness_endpoint=f"http://0.0.0.0:{cfg.liveness_port}/healthz",
    )
