"""Handlers of `VideoTranscode`: reconcile on create/resume/spec change; clean storage up before
the CR goes (finalizer `videoflix.io/cleanup`).

No kopf timers: the resync safety net and live progress are process-wide loops of the
reconciler (`run_resync`, `run_progress`), because any timer on a resource makes kopf keep a
task and the full body of every object of it in memory.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf
from videoflix_core.transcode import GROUP, PLURAL, VERSION, VideoTranscodeSpec

from videoflix_operator.reconcile import NotSynced
from videoflix_operator.state import reconciler

log = logging.getLogger(__name__)
# A database outage is retried soon; a cluster hiccup a little later.
DB_RETRY_SECONDS = 5
CLUSTER_RETRY_SECONDS = 10


async def _reconcile(namespace: str | None, name: str) -> None:
    if namespace is None:
        raise kopf.PermanentError("VideoTranscode is namespaced")
    try:
        await reconciler().reconcile(namespace, name)
    except NotSynced as exc:
        raise kopf.TemporaryError(f"database not reachable: {exc}", delay=DB_RETRY_SECONDS) from exc
    except kopf.TemporaryError:
        raise
    except Exception as exc:
        raise kopf.TemporaryError(f"reconcile failed: {exc}", delay=CLUSTER_RETRY_SECONDS) from exc


@kopf.index(GROUP, VERSION, PLURAL)
async def transcode_seen(body: kopf.Body, **_: Any) -> None:
    """Every version of every CR into the reconciler's CR cache (see handlers.jobs.job_seen:
    an index, so no handler runs before the initial listing is in; nothing kept by kopf)."""
    reconciler().kube.transcodes.put(body)


@kopf.on.event(GROUP, VERSION, PLURAL)
async def transcode_changed(type: str | None, namespace: str | None, name: str, **_: Any) -> None:
    if type == "DELETED" and namespace is not None:
        reconciler().kube.transcodes.remove(namespace, name)


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
async def reconcile_transcode(namespace: str | None, name: str, **_: Any) -> None:
    await _reconcile(namespace, name)


@kopf.on.delete(GROUP, VERSION, PLURAL)
async def cleanup_transcode(namespace: str | None, name: str, spec: kopf.Spec, **_: Any) -> None:
    try:
        parsed = VideoTranscodeSpec.model_validate(dict(spec))
    except ValueError:
        return
    if namespace is None:
        return  # never valid, so nothing of it was ever stored by us
    try:
        done = await reconciler().cleanup(namespace, name, parsed)
    except Exception as exc:
        raise kopf.TemporaryError(f"cleanup failed: {exc}", delay=CLUSTER_RETRY_SECONDS) from exc
    if not done:
        raise kopf.TemporaryError("waiting for the Job pods to stop", delay=2)
