"""Handler of the transcode Jobs: any change of one re-reconciles the VideoTranscode owning it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf
from videoflix_core.transcode import LABEL_TRANSCODE

from videoflix_operator.builders import MANAGED_BY
from videoflix_operator.state import reconciler


@kopf.on.event(
    "batch",
    "v1",
    "jobs",
    labels={"app.kubernetes.io/managed-by": MANAGED_BY, LABEL_TRANSCODE: kopf.PRESENT},
)
async def job_changed(
    type: str | None, namespace: str | None, labels: Mapping[str, str], **_: Any
) -> None:
    if type is None or namespace is None:
        return  # the initial listing: every CR is reconciled by its resume handler anyway
    rec = reconciler()
    if type == "DELETED":
        rec.scheduler_wakeup.set()  # a slot may have freed up
    rec.request(namespace, labels[LABEL_TRANSCODE])
