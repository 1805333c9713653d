"""A small JSON client for the test API server (httpx, plain dicts).

The harness talks to the API server with raw dicts on purpose: the local kubelet handles
thousands of pods in fast mode, and model (de)serialization of the generated clients would
dominate that. Code under test uses its own client and the kubeconfig.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx

Obj = dict[str, Any]

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"


class KubeApiError(Exception):
    def __init__(self, status: int, body: Obj | str, method: str, path: str) -> None:
        self.status = status
        self.body = body
        self.reason = body.get("reason", "") if isinstance(body, dict) else ""
        message = body.get("message", body) if isinstance(body, dict) else body
        super().__init__(f"{method} {path} → {status}: {message}")


class KubeClient:
    def __init__(self, server: str, token: str, ca_file: str, *, timeout: float = 30.0) -> None:
        self.server = server
        context = ssl.create_default_context(cafile=ca_file)
        self._http = httpx.Client(
            base_url=server,
            verify=context,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            timeout=timeout,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
        )
        self._lock = threading.Lock()
        self._watch_sockets: set[socket.socket] = set()

    def close(self) -> None:
        """Close the client; also ends watches blocked in another thread."""
        with self._lock:
            sockets = list(self._watch_sockets)
        for sock in sockets:
            # Closing the httpx client does not wake a thread blocked reading a stream;
            # shutting the socket down does (and lets the API server end the watch at once).
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Obj | None = None,
        content_type: str = "application/json",
        params: dict[str, Any] | None = None,
    ) -> Obj:
        content = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": content_type} if content is not None else {}
        response = self._http.request(method, path, content=content, headers=headers, params=params)
        if response.status_code >= 400:
            try:
                detail: Obj | str = response.json()
            except ValueError:
                detail = response.text
            raise KubeApiError(response.status_code, detail, method, path)
        result: Obj = response.json() if response.content else {}
        return result

    def get(self, path: str, **params: Any) -> Obj:
        return self.request("GET", path, params=params or None)

    def get_or_none(self, path: str) -> Obj | None:
        try:
            return self.get(path)
        except KubeApiError as error:
            if error.status == 404:
                return None
            raise

    def create(self, path: str, body: Obj) -> Obj:
        return self.request("POST", path, body=body)

    def patch(self, path: str, body: Obj, *, content_type: str = MERGE_PATCH) -> Obj:
        return self.request("PATCH", path, body=body, content_type=content_type)

    def apply(self, path: str, body: Obj, *, manager: str = "videoflix-tests") -> Obj:
        """Server-side apply (creates or updates); JSON is valid YAML."""
        return self.request(
            "PATCH",
            path,
            body=body,
            content_type=APPLY_PATCH,
            params={"fieldManager": manager, "force": "true"},
        )

    def delete(self, path: str, body: Obj | None = None, *, missing_ok: bool = True) -> Obj | None:
        try:
            return self.request("DELETE", path, body=body)
        except KubeApiError as error:
            if error.status == 404 and missing_ok:
                return None
            raise

    def watch(
        self, path: str, resource_version: str, *, timeout_seconds: int = 60
    ) -> Iterator[Obj]:
        """Watch events ({"type", "object"}) from a resourceVersion, ending after the timeout.

        A 410 Gone (resourceVersion too old) arrives as an ERROR event; callers relist.
        """
        params = {
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
        }
        timeout = httpx.Timeout(10.0, read=timeout_seconds + 10.0)
        with self._http.stream("GET", path, params=params, timeout=timeout) as response:
            if response.status_code >= 400:
                response.read()
                raise KubeApiError(response.status_code, response.text, "WATCH", path)
            stream = response.extensions.get("network_stream")
            sock = stream.get_extra_info("socket") if stream is not None else None
            if sock is not None:
                with self._lock:
                    self._watch_sockets.add(sock)
            try:
                for line in response.iter_lines():
                    if line:
                        yield json.loads(line)
            finally:
                if sock is not None:
                    with self._lock:
                        self._watch_sockets.discard(sock)

    def wait_for(
        self,
        path: str,
        predicate: Callable[[Obj | None], bool],
        *,
        timeout: float = 60.0,
        interval: float = 0.1,
        what: str = "",
    ) -> Obj | None:
        """Poll an object until the predicate holds (the object is None while it is missing)."""
        deadline = time.monotonic() + timeout
        last: Obj | None = None
        while True:
            last = self.get_or_none(path)
            if predicate(last):
                return last
            if time.monotonic() > deadline:
                state = json.dumps((last or {}).get("status"), indent=1)[:3000]
                raise TimeoutError(
                    f"timed out after {timeout}s waiting for {what or path}: {state}"
                )
            time.sleep(interval)
