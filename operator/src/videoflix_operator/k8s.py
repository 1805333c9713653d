"""The only module that talks to the Kubernetes API server (besides kopf's own watches).

The official client is synchronous; calls run in worker threads so the kopf event loop stays free.
Objects are returned as plain camelCase dicts exactly as the API server sends them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from videoflix_core.transcode import GROUP, LABEL_TRANSCODE, PLURAL, VERSION

from videoflix_operator.builders import MANAGED_BY

log = logging.getLogger(__name__)
Obj = dict[str, Any]
MANAGED_SELECTOR = f"app.kubernetes.io/managed-by={MANAGED_BY}"


class Kube:
    def __init__(self, api_client: client.ApiClient) -> None:
        self._api = api_client
        self._batch = client.BatchV1Api(api_client)
        self._core = client.CoreV1Api(api_client)
        self._custom = client.CustomObjectsApi(api_client)

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
    def _raw(response: Any) -> Obj:
        return json.loads(response.data)  # type: ignore[no-any-return]

    async def get_transcode(self, namespace: str, name: str) -> Obj | None:
        try:
            resp = await asyncio.to_thread(
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
        return self._raw(resp)

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
        await asyncio.to_thread(
            self._custom.patch_namespaced_custom_object_status,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            {"status": patch},
            _content_type="application/merge-patch+json",
        )

    async def list_jobs(self, namespace: str, selector: str) -> list[Obj]:
        if namespace:
            resp = await asyncio.to_thread(
                self._batch.list_namespaced_job,
                namespace,
                label_selector=selector,
                _preload_content=False,
            )
        else:
            resp = await asyncio.to_thread(
                self._batch.list_job_for_all_namespaces,
                label_selector=selector,
                _preload_content=False,
            )
        return list(self._raw(resp).get("items") or [])

    async def jobs_of(self, namespace: str, cr_name: str) -> list[Obj]:
        return await self.list_jobs(namespace, f"{MANAGED_SELECTOR},{LABEL_TRANSCODE}={cr_name}")

    async def pods_of_job(self, namespace: str, job_name: str) -> list[Obj]:
        resp = await asyncio.to_thread(
            self._core.list_namespaced_pod,
            namespace,
            label_selector=f"batch.kubernetes.io/job-name={job_name}",
            _preload_content=False,
        )
        return list(self._raw(resp).get("items") or [])

    async def pods_of_transcode(self, namespace: str, cr_name: str) -> list[Obj]:
        resp = await asyncio.to_thread(
            self._core.list_namespaced_pod,
            namespace,
            label_selector=f"{MANAGED_SELECTOR},{LABEL_TRANSCODE}={cr_name}",
            _preload_content=False,
        )
        return list(self._raw(resp).get("items") or [])

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
            await asyncio.to_thread(
                self._batch.create_namespaced_job,
                namespace,
                manifest,  # type: ignore[arg-type]
            )
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
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

    async def annotate_job(self, namespace: str, name: str, annotations: dict[str, str]) -> None:
        try:
            await asyncio.to_thread(
                self._batch.patch_namespaced_job,
                name,
                namespace,
                {"metadata": {"annotations": annotations}},
            )
        except ApiException as exc:
            if exc.status != 404:
                raise

    async def release_job(self, namespace: str, name: str) -> None:
        try:
            await asyncio.to_thread(
                self._batch.patch_namespaced_job, name, namespace, {"spec": {"suspend": False}}
            )
        except ApiException as exc:
            if exc.status != 404:
                raise

    def close(self) -> None:
        self._api.close()  # type: ignore[no-untyped-call]
