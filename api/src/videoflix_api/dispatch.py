"""Handing transcode work to the pipeline: the Kubernetes dispatcher creates `VideoTranscode` CRs.

`make_dispatcher(settings)` is the one place that picks an implementation; `create_app` also
accepts an injected dispatcher (the embedded mode passes its in-process one).
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING, Any, Protocol

from videoflix_core.db import Video
from videoflix_core.transcode import (
    GROUP,
    PLURAL,
    VERSION,
    Strategy,
    cr_name,
    videotranscode_manifest,
)

from videoflix_api.config import Settings

if TYPE_CHECKING:
    from kubernetes.client import CustomObjectsApi

log = logging.getLogger(__name__)


class DispatchError(Exception):
    """The transcode could not be handed over; the message is shown to staff as the reason."""


class Dispatcher(Protocol):
    def submit(self, video: Video) -> None:
        """Start (or restart, for a new `transcode_generation`) the transcode of `video`."""
        ...

    def cancel(self, video_id: int) -> None:
        """Stop the transcode of a deleted video and let the pipeline clean up its storage."""
        ...


class UnavailableDispatcher:
    """Stands in while the configured dispatcher cannot be built; every hand-over fails with why.

    Videos created meanwhile are marked `error` with this reason and can be retried by staff.
    """

    def __init__(self, reason: str):
        self.reason = reason

    def submit(self, video: Video) -> None:
        raise DispatchError(f"dispatcher unavailable: {self.reason}")

    def cancel(self, video_id: int) -> None:
        raise DispatchError(f"dispatcher unavailable: {self.reason}")


class KubernetesDispatcher:
    """Creates, replaces and deletes the `VideoTranscode` CR named `video-<id>`.

    Replacing patches the spec in place (never delete + create): deleting the CR would run the
    operator's cleanup finalizer, which removes everything under the video's prefix, including the
    newly uploaded source.
    """

    def __init__(
        self,
        api: CustomObjectsApi,
        namespace: str,
        bucket: str,
        attempts: int = 3,
        strategy: Strategy = Strategy.PER_RENDITION,
        request_timeout: float = 10,
    ):
        self.api = api
        self.namespace = namespace
        self.bucket = bucket
        self.attempts = attempts
        self.strategy = strategy
        self.request_timeout = request_timeout

    @classmethod
    def from_settings(cls, settings: Settings) -> KubernetesDispatcher:
        from kubernetes import client, config

        if settings.kubeconfig:
            api_client = config.new_client_from_config(  # type: ignore[no-untyped-call]
                config_file=settings.kubeconfig
            )
        else:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
            api_client = client.ApiClient()
        return cls(
            client.CustomObjectsApi(api_client),
            settings.namespace,
            settings.s3_bucket,
            strategy=settings.transcode_strategy,
            request_timeout=settings.kubernetes_request_timeout_seconds,
        )

    def manifest(self, video: Video) -> dict[str, Any]:
        if not video.source_key:
            raise DispatchError("the video has no source to transcode")
        try:
            return videotranscode_manifest(
                video_id=video.id,
                source_bucket=self.bucket,
                source_key=video.source_key,
                generation=video.transcode_generation,
                namespace=self.namespace,
                strategy=self.strategy,
            )
        except ValueError as exc:
            raise DispatchError(f"invalid transcode request: {exc}") from exc

    def submit(self, video: Video) -> None:
        body = self.manifest(video)
        self._with_retries(lambda: self._create_or_patch(body), f"submit video {video.id}")
        log.info(
            "Submitted VideoTranscode",
            extra={"cr": body["metadata"]["name"], "generation": video.transcode_generation},
        )

    def _create_or_patch(self, body: dict[str, Any]) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            self.api.create_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, body, _request_timeout=self.request_timeout
            )
        except ApiException as exc:
            if exc.status != 409:
                raise
            # Already there (a new generation, or a second hand-over of the same one by the
            # outbox sweeper): patching the same spec again changes nothing, so it is idempotent.
            self.api.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                self.namespace,
                PLURAL,
                body["metadata"]["name"],
                {"spec": body["spec"]},
                _content_type="application/merge-patch+json",
                _request_timeout=self.request_timeout,
            )

    def cancel(self, video_id: int) -> None:
        from kubernetes.client.exceptions import ApiException

        def delete() -> None:
            try:
                self.api.delete_namespaced_custom_object(
                    GROUP,
                    VERSION,
                    self.namespace,
                    PLURAL,
                    cr_name(video_id),
                    _request_timeout=self.request_timeout,
                )
            except ApiException as exc:
                if exc.status != 404:
                    raise

        self._with_retries(delete, f"cancel video {video_id}")

    def _with_retries(self, action: Any, what: str) -> None:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        for attempt in range(1, self.attempts + 1):
            try:
                action()
                return
            except ApiException as exc:
                transient = exc.status in (0, 429) or (exc.status or 0) >= 500
                reason = f"Kubernetes API refused to {what}: {exc.status} {exc.reason}"
                if exc.body and not transient:
                    reason += f": {_api_message(exc.body)}"
                if not transient or attempt == self.attempts:
                    raise DispatchError(reason) from exc
            except (HTTPError, OSError) as exc:
                if attempt == self.attempts:
                    raise DispatchError(f"Kubernetes API unreachable ({what}): {exc}") from exc
            time.sleep(0.2 * 2**attempt)


def _api_message(body: Any) -> str:
    import json

    try:
        return str(json.loads(body).get("message", body))[:500]
    except (ValueError, AttributeError):
        return str(body)[:500]


class CrashBeforeHandOver:
    """TEST-ONLY fault (`VIDEOFLIX_FAULT_CRASH_AFTER_COMMIT`, refused outside dev mode): the
    process dies where a crash loses a hand-over, after the row is committed and before its CR
    is created, so a test can show that the outbox sweeper of the next process hands it over."""

    EXIT_CODE = 70

    def __init__(self, inner: Dispatcher):
        self.inner = inner

    def submit(self, video: Video) -> None:
        log.warning("Fault hook: exiting before the hand-over", extra={"video_id": video.id})
        os._exit(self.EXIT_CODE)

    def cancel(self, video_id: int) -> None:
        self.inner.cancel(video_id)


def make_dispatcher(settings: Settings) -> Dispatcher:
    """The dispatcher `settings` ask for."""
    if settings.dispatcher == "kubernetes":
        dispatcher: Dispatcher = KubernetesDispatcher.from_settings(settings)
        if settings.fault_crash_after_commit:
            dispatcher = CrashBeforeHandOver(dispatcher)
        return dispatcher
    raise ValueError(
        f"dispatcher {settings.dispatcher!r} is provided by the embedded mode; "
        "pass it to create_app(dispatcher=...)"
    )
