"""Handlers of the transcode Jobs: they feed the Job cache, and any change of one re-reconciles
the VideoTranscode owning it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf
from videoflix_core.transcode import LABEL_TRANSCODE

from videoflix_operator.builders import MANAGED_BY
from videoflix_operator.state import reconciler


@kopf.index(
    "batch",
    "v1",
    "jobs",
    labels={"app.kubernetes.io/managed-by": MANAGED_BY, LABEL_TRANSCODE: kopf.PRESENT},
)
async def job_seen(body: kopf.Body, **_: Any) -> None:
    """Every version of every Job, the initial listing included, into the Job cache.

    An index handler, not an event one, because kopf starts no other handler before every
    index has seen its initial listing: no CR is reconciled against a half-filled cache after a
    restart. It indexes nothing itself (returns None), so kopf keeps no copy; async, so kopf
    runs it on the event loop instead of a worker thread.
    """
    reconciler().kube.jobs.put(body)


@kopf.on.event(
    "batch",
    "v1",
    "jobs",
    labels={"app.kubernetes.io/managed-by": MANAGED_BY, LABEL_TRANSCODE: kopf.PRESENT},
)
async def job_changed(
    type: str | None, namespace: str | None, name: str, labels: Mapping[str, str], **_: Any
) -> None:
    if namespace is None:
        return
    rec = reconciler()
    # Asked on every event (job_seen has just recorded this version), so no flag outlives it.
    changed = rec.kube.jobs.take_changed(namespace, name)
    if type is None:
        return  # the initial listing: every CR is reconciled by its resume handler anyway
    if type == "DELETED":
        rec.kube.jobs.remove(namespace, name)
        rec.scheduler_wakeup.set()  # a slot may have freed up
    elif not changed:
        return  # nothing a reconcile reads is different: no pass, no request
    rec.request(namespace, labels[LABEL_TRANSCODE])
