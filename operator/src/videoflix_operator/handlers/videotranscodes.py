"""Handlers of `VideoTranscode`: reconcile on create/resume/spec change; clean storage up before
the CR goes (finalizer `videoflix.io/cleanup`). The Jobs are not kopf's to watch: the
reconciler's own watch feeds the Job cache (`Reconciler.run_job_watch`).

No kopf timers: the resync safety net and live progress are process-wide loops of the
reconciler (`run_resync`, `run_progress`), because any timer on a resource makes kopf keep a
task and the full body of every object of it in memory.
"""

from __future__ import annotations

from typing import Any

import kopf
from videoflix_core.transcode import GROUP, PLURAL, VERSION, VideoTranscodeSpec

from videoflix_operator.reconcile import CLUSTER_RETRY_SECONDS
from videoflix_operator.state import reconciler


@kopf.on.event(GROUP, VERSION, PLURAL)
async def transcode_changed(
    type: str | None, body: kopf.Body, namespace: str | None, name: str, **_: Any
) -> None:
    """Every version of every CR into the reconciler's CR cache (nothing kept by kopf).

    Not a kopf index: kopf's wait for every index's initial listing wakes every waiting object
    for each object listed, quadratic in the objects — a restart with 1,000 CRs and their 4,000
    Jobs took 109 s, one with 10,000 would not finish. A reconcile of a CR not cached yet GETs
    it (`Kube.get_transcode`)."""
    if namespace is None:
        return
    if type == "DELETED":
        reconciler().kube.transcodes.remove(namespace, name)
    else:
        reconciler().kube.transcodes.put(body)


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
async def reconcile_transcode(namespace: str | None, name: str, **_: Any) -> None:
    """Queue the CR for a reconcile worker and return: kopf's task for the object ends now
    instead of holding its event body until the reconcile is through (`workqueue`); failures
    are retried by the queue."""
    if namespace is None:
        raise kopf.PermanentError("VideoTranscode is namespaced")
    reconciler().request(namespace, name)


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
