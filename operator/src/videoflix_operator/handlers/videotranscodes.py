"""Handlers of `VideoTranscode`: reconcile on create/resume/spec change and on a resync timer;
clean storage up before the CR goes (finalizer `videoflix.io/cleanup`)."""

from __future__ import annotations

import logging
from typing import Any

import kopf
from videoflix_core.transcode import GROUP, PLURAL, VERSION, Phase, VideoTranscodeSpec

from videoflix_operator.config import get_settings
from videoflix_operator.reconcile import NotSynced
from videoflix_operator.state import reconciler

log = logging.getLogger(__name__)
_settings = get_settings()
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


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
async def reconcile_transcode(namespace: str | None, name: str, **_: Any) -> None:
    await _reconcile(namespace, name)


@kopf.timer(
    GROUP,
    VERSION,
    PLURAL,
    interval=_settings.resync_seconds,
    initial_delay=_settings.resync_seconds,
    # Only CRs that have been quiet that long: one that is moving is being reconciled anyway.
    idle=_settings.resync_seconds,
)
async def resync_transcode(namespace: str | None, name: str, status: kopf.Status, **_: Any) -> None:
    """Safety net for missed Job events and database outages (level-based: always safe).

    Finished CRs whose outcome this process already wrote cost nothing.
    """
    phase = status.get("phase")
    final = phase in (Phase.SUCCEEDED.value, Phase.FAILED.value)
    if final and namespace is not None and reconciler().is_synced(namespace, name):
        return
    await _reconcile(namespace, name)


def _is_running(status: kopf.Status, **_: Any) -> bool:
    return status.get("phase") in (Phase.PROBING.value, Phase.TRANSCODING.value)


@kopf.timer(GROUP, VERSION, PLURAL, interval=_settings.progress_seconds, when=_is_running)
async def live_progress(namespace: str | None, name: str, status: kopf.Status, **_: Any) -> None:
    """Live progress from the running pods' progress lines (Jobs only say when a step ends).

    Best effort: a failed read waits for the next tick instead of kopf's retry machinery.
    """
    if namespace is None:
        return
    try:
        await reconciler().refresh_progress(namespace, name, status.get("specHash"))
    except Exception as exc:
        log.debug("Live progress of %s not refreshed: %s", name, exc)


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
