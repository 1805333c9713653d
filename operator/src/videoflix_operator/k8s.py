"""The only module that talks to the Kubernetes API server (besides kopf's own watches).

The official client is synchronous; calls run in worker threads so the kopf event loop stays free.
Objects are returned as plain camelCase dicts exactly as the API server sends them. Managed Jobs
are read from `jobs`, the watch-fed cache, never listed per reconcile: every Job write here
records the API server's answer in it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import threading
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines
from videoflix_core.transcode import GROUP, KIND, LABEL_TRANSCODE, PLURAL, VERSION

from videoflix_operator.builders import MANAGED_BY
from videoflix_operator.jobcache import JobCache, TranscodeCache, slim_job

log = logging.getLogger(__name__)
Obj = dict[str, Any]
MANAGED_SELECTOR = f"app.kubernetes.io/managed-by={MANAGED_BY}"
# Objects per page of the operator's LISTs. Each page is parsed whole (a page of 500 Jobs is
# 3.6 MB of JSON, ~30 MB as Python objects) and the resync reconciles a page's CRs before the
# next: at 10,000 CRs pages of 500 raised the heap's high-water mark by 200 MiB, for nothing a
# smaller page loses (40,000 Jobs are 400 LISTs per resync period).
LIST_PAGE = 100
# How long the API server keeps one Jobs watch open; it is then resumed from its last version.
WATCH_SECONDS = 300


class WatchExpired(Exception):
    """The watch's resource version is too old for the API server (410 Gone): list again."""


class Kube:
    def __init__(self, api_client: client.ApiClient) -> None:
        self._api = api_client
        self._batch = client.BatchV1Api(api_client)
        self._core = client.CoreV1Api(api_client)
        self._custom = client.CustomObjectsApi(api_client)
        self.jobs = JobCache()
        self.transcodes = TranscodeCache()
        self._events: set[asyncio.Task[None]] = set()  # posts in flight (kept from the GC)

    @classmethod
    def from_environment(cls, pool_size: int = 16) -> Kube:
        """In-cluster service account when there is one, else the kubeconfig (KUBECONFIG)."""
        configuration = client.Configuration()
        try:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except config.ConfigException:
            # KUBECONFIG is read now, not when the client library was imported.
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=os.environ.get("KUBECONFIG"), client_configuration=configuration
            )
        configuration.connection_pool_maxsize = pool_size
        return cls(client.ApiClient(configuration))

    @staticmethod
    async def _call(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Obj:
        """One client call (`_preload_content=False`) in a worker thread, its body read and
        parsed there too: `response.data` reads the socket, which on the event loop blocked
        every handler for the length of each transfer."""

        def run() -> Obj:
            return json.loads(call(*args, **kwargs).data)  # type: ignore[no-any-return]

        return await asyncio.to_thread(run)

    async def get_transcode(self, namespace: str, name: str) -> Obj | None:
        """The CR as last seen by the watch (or written by us); a GET only when never seen."""
        cached = self.transcodes.get(namespace, name)
        if cached is not None:
            return cached
        try:
            resp = await self._call(
                self._custom.get_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                _preload_content=False,
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        body = resp
        self.transcodes.put(body)
        return body

    async def transcode_pages(
        self, namespace: str, page: int = LIST_PAGE
    ) -> AsyncIterator[list[Obj]]:
        """Every VideoTranscode of a namespace, a page at a time: a pass over 10,000 CRs never
        holds them all."""
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"limit": page, "_preload_content": False}
            if token:
                kwargs["_continue"] = token
            resp = await self._call(
                self._custom.list_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                **kwargs,
            )
            body = resp
            items = list(body.get("items") or [])
            for item in items:
                self.transcodes.put(item)
            yield items
            token = body.get("metadata", {}).get("continue") or None
            if not token:
                return

    async def delete_transcode(self, namespace: str, name: str, uid: str) -> None:
        """Delete a CR (its finalizer then runs); only the object seen (uid), 404 is fine."""
        try:
            await asyncio.to_thread(
                self._custom.delete_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                body=client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=uid)),
            )
        except ApiException as exc:
            if exc.status not in (404, 409):
                raise

    async def patch_transcode_status(self, namespace: str, name: str, patch: Obj) -> None:
        resp = await self._call(
            self._custom.patch_namespaced_custom_object_status,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            {"status": patch},
            _content_type="application/merge-patch+json",
            _preload_content=False,
        )
        # The next reconcile must see this status, even before the watch event says so.
        self.transcodes.put(resp)

    async def relist_jobs(self, namespaces: list[str] | None, page: int = LIST_PAGE) -> int:
        """Re-read every managed Job into the cache (None: all namespaces), in pages.

        The safety net of the watch: a DELETED event missed across a watch reconnect would
        otherwise keep a gone Job counted as running forever. Returns the Jobs listed.
        """
        listed = 0
        for namespace in namespaces if namespaces is not None else [None]:
            count, _ = await self.list_jobs(namespace, page)
            listed += count
        return listed

    async def list_jobs(self, namespace: str | None, page: int = LIST_PAGE) -> tuple[int, str]:
        """Every managed Job of `namespace` (None: all) into the cache, in pages; the ones the
        cache knew but the LIST did not return are dropped. Returns (Jobs listed, the LIST's
        resource version: where a watch resumes)."""
        listed = 0
        seen: set[tuple[str, str]] = set()
        token: str | None = None
        version = ""
        while True:
            kwargs: dict[str, Any] = {
                "label_selector": MANAGED_SELECTOR,
                "limit": page,
                "_preload_content": False,
            }
            if token:
                kwargs["_continue"] = token
            if namespace:
                body = await self._call(self._batch.list_namespaced_job, namespace, **kwargs)
            else:
                body = await self._call(self._batch.list_job_for_all_namespaces, **kwargs)
            version = version or str(body.get("metadata", {}).get("resourceVersion") or "")
            for job in body.get("items") or []:
                meta = job["metadata"]
                seen.add((str(meta.get("namespace") or namespace), str(meta["name"])))
                self.jobs.put(job)
                listed += 1
            token = body.get("metadata", {}).get("continue") or None
            if not token:
                break
        self.jobs.drop_missing(namespace, seen, version)
        return listed, version

    async def watch_jobs(
        self,
        namespace: str | None,
        version: str,
        on_event: Callable[[str, Obj], None],
        seconds: int = WATCH_SECONDS,
    ) -> str:
        """Watch the managed Jobs of `namespace` (None: all) from `version` until the API server
        ends the watch (after `seconds`); `on_event(type, slim Job)` is called on the event loop
        for each change, in order. Returns the version to resume from; raises `WatchExpired`
        when `version` is too old (410: list again).

        Not kopf's watch: kopf keeps a memory record per object and runs each event through its
        handler machinery, which for 40,000 Jobs was most of the operator's memory and CPU. The
        stream is read in a daemon thread of its own (a 5-minute blocking read would hold one of
        the I/O threads, and must not hold up the interpreter's exit), parsed and slimmed there.
        """
        loop = asyncio.get_running_loop()
        done: asyncio.Future[str] = loop.create_future()

        def deliver(callback: Callable[..., None], *args: Any) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is gone: the process is ending
                loop.call_soon_threadsafe(callback, *args)

        def finish(result: str | BaseException) -> None:
            if done.done():
                return
            if isinstance(result, BaseException):
                done.set_exception(result)
            else:
                done.set_result(result)

        def run() -> None:
            try:
                result: str | BaseException = self._stream_jobs(
                    namespace, version, seconds, lambda kind, job: deliver(on_event, kind, job)
                )
            except BaseException as exc:  # handed to the awaiting task
                result = exc
            deliver(finish, result)

        threading.Thread(target=run, name="videoflix-job-watch", daemon=True).start()
        return await done

    def _stream_jobs(
        self, namespace: str | None, version: str, seconds: int, emit: Callable[[str, Obj], None]
    ) -> str:
        kwargs: dict[str, Any] = {
            "label_selector": MANAGED_SELECTOR,
            "watch": True,
            "allow_watch_bookmarks": True,
            "resource_version": version,
            "timeout_seconds": seconds,
            # A half-dead connection must not silence the watch forever.
            "_request_timeout": (10, seconds + 30),
            "_preload_content": False,
        }
        resp: Any  # the urllib3 response (`_preload_content=False`)
        if namespace:
            resp = self._batch.list_namespaced_job(namespace, **kwargs)
        else:
            resp = self._batch.list_job_for_all_namespaces(**kwargs)
        try:
            for line in iter_resp_lines(resp):  # type: ignore[no-untyped-call]
                if not line.strip():
                    continue
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise WatchExpired(str(obj.get("message")))
                    raise ApiException(status=obj.get("code"), reason=obj.get("message"))
                version = str(obj.get("metadata", {}).get("resourceVersion") or version)
                if kind != "BOOKMARK":
                    emit(str(kind), slim_job(obj))
        finally:
            resp.close()
            resp.release_conn()
        return version

    async def list_visible_jobs(self, own_namespace: str) -> tuple[str | None, str]:
        """`list_jobs` of every namespace when this service account may list them all, else of
        `own_namespace` (a namespaced Role answers the cluster-wide LIST with 403). Returns the
        scope listed (None: all namespaces) and the LIST's resource version."""
        try:
            _, version = await self.list_jobs(None)
            return None, version
        except ApiException as exc:
            if exc.status != 403:
                raise
        _, version = await self.list_jobs(own_namespace)
        return own_namespace, version

    async def jobs_of(self, namespace: str, cr_name: str) -> list[Obj]:
        return self.jobs.jobs_of(namespace, cr_name)

    def unfinished_jobs(self) -> list[Obj]:
        return self.jobs.unfinished()

    async def pods_of_transcode(self, namespace: str, cr_name: str) -> list[Obj]:
        resp = await self._call(
            self._core.list_namespaced_pod,
            namespace,
            label_selector=f"{MANAGED_SELECTOR},{LABEL_TRANSCODE}={cr_name}",
            _preload_content=False,
        )
        return list(resp.get("items") or [])

    async def running_pods(self, namespace: str) -> list[Obj]:
        """Every managed pod in phase Running in `namespace` (live progress of all transcodes)."""
        resp = await self._call(
            self._core.list_namespaced_pod,
            namespace,
            label_selector=MANAGED_SELECTOR,
            field_selector="status.phase=Running",
            _preload_content=False,
        )
        return list(resp.get("items") or [])

    async def pod_log_tail(
        self, namespace: str, pod_name: str, container: str, limit_bytes: int = 4096
    ) -> str | None:
        """The last few lines of a running container's log; None when the log cannot be read
        (pod gone, not started, or no log access on this node): progress is only cosmetic."""
        try:
            return await asyncio.to_thread(
                self._core.read_namespaced_pod_log,
                pod_name,
                namespace,
                container=container,
                tail_lines=10,
                limit_bytes=limit_bytes,
            )
        except ApiException as exc:
            log.debug("No log of pod %s: %s", pod_name, exc.status)
            return None

    async def create_job(self, namespace: str, manifest: Obj) -> bool:
        """Create a Job; False when it already exists (a restart found its own earlier work)."""
        try:
            resp = await self._call(
                self._batch.create_namespaced_job,
                namespace,
                manifest,
                _preload_content=False,
            )
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        self.jobs.put(resp)
        return True

    async def delete_job(self, namespace: str, name: str) -> None:
        """Delete a Job and, in the background, its pods (404 is fine: already gone)."""
        try:
            await asyncio.to_thread(
                self._batch.delete_namespaced_job,
                name,
                namespace,
                propagation_policy="Background",
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
        self.jobs.remove(namespace, name)

    async def annotate_job(self, namespace: str, name: str, annotations: dict[str, str]) -> None:
        try:
            resp = await self._call(
                self._batch.patch_namespaced_job,
                name,
                namespace,
                {"metadata": {"annotations": annotations}},
                _preload_content=False,
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
            return
        self.jobs.put(resp)

    async def release_job(self, namespace: str, name: str) -> None:
        try:
            resp = await self._call(
                self._batch.patch_namespaced_job,
                name,
                namespace,
                {"spec": {"suspend": False}},
                _preload_content=False,
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
            return
        self.jobs.put(resp)

    def post_event(self, body: Obj, type_: str, reason: str, message: str) -> None:
        """Posts an Event on the CR `body` in the background, best effort.

        Not `kopf.event`: that works only inside a kopf handler (its event queue is a context
        variable of the handler's task), and the reconciler's own loops (resync, scheduler)
        reconcile outside any; there it raised and failed the pass after the status was written.
        """
        task = asyncio.get_running_loop().create_task(
            self._create_event(body, type_, reason, message)
        )
        self._events.add(task)
        task.add_done_callback(self._events.discard)

    async def _create_event(self, body: Obj, type_: str, reason: str, message: str) -> None:
        meta = body["metadata"]
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": KIND,
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],  # the API server refuses longer ones
            "source": {"component": MANAGED_BY},
            "reportingComponent": MANAGED_BY,
            "reportingInstance": socket.gethostname(),
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            await self._call(
                self._core.create_namespaced_event,
                meta["namespace"],
                event,
                _preload_content=False,
            )
        except Exception as exc:  # an Event is a note for kubectl, never worth failing for
            log.warning("Event %s on %s not posted: %s", reason, meta["name"], exc)

    def close(self) -> None:
        self._api.close()  # type: ignore[no-untyped-call]
