"""A local "kubelet": binds pods to one Node and runs their containers as local processes.

There is no scheduler and no container runtime in the test control plane. This kubelet stands
in for both, doing only what a real one does that our objects depend on: it registers a Ready
Node, binds pending pods to it, runs each container's command with the pod's environment (via
the image mapping in podenv), honours activeDeadlineSeconds and restartPolicy, reports pod
status with exit codes and termination messages, and stops the processes of deleted pods.
The real Job controller and garbage collector then act on these pods.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from . import containers as podman
from . import podenv
from .client import KubeApiError, KubeClient
from .containers import ContainerMode
from .controlplane import spawn, stop_process
from .logserver import LogServer
from .podenv import ContainerConfigError, ImageMapping, ImageNotMapped, PathMap

log = logging.getLogger(__name__)
Obj = dict[str, Any]

DEADLINE_MESSAGE = "Pod was active on the node longer than the specified deadline"
# Real kubelets back off 10 s doubling; a short fixed delay keeps restart tests quick.
RESTART_DELAY = 0.5
CONFIG_RETRY_DELAY = 1.0
MAX_KILL_GRACE = 5.0
# A real kubelet's status manager keeps a pod's status until the API server has taken it; an
# update lost to an API server restart would leave the pod Running for ever and its Job stuck.
API_RETRY_DELAY = 0.5
API_RETRY_MAX_DELAY = 5.0
Result = TypeVar("Result")


@dataclass(frozen=True)
class FastResult:
    """What a pod "did" in fast mode."""

    exit_code: int = 0
    message: str = ""


FastHandler = Callable[[Obj], FastResult]


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def exit_code_of(returncode: int) -> int:
    # Popen reports death by signal N as -N; container runtimes report 128 + N.
    return 128 - returncode if returncode < 0 else returncode


def pod_key(pod: Obj) -> str:
    meta = pod["metadata"]
    return f"{meta.get('namespace', '')}/{meta['name']}"


@dataclass
class ContainerRun:
    container: Obj
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    log_file: Path
    message_file: Path
    process: subprocess.Popen[bytes] | None = None
    started_at: str = ""
    finished_at: str = ""
    exit_code: int | None = None
    restarts: int = 0
    last_state: Obj | None = None
    start_error: str = ""

    @property
    def name(self) -> str:
        return str(self.container["name"])

    def start(self) -> None:
        self.message_file.write_bytes(b"")
        self.started_at = now()
        self.finished_at = ""
        self.exit_code = None
        self.start_error = ""
        try:
            self.process = spawn(self.argv, log_file=self.log_file, env=self.env, cwd=self.cwd)
        except OSError as error:
            # What a runtime reports when the entrypoint cannot be executed.
            self.process = None
            self.exit_code = 128
            self.finished_at = self.started_at
            self.start_error = f"failed to start {self.argv[0]!r}: {error.strerror or error}"

    def poll(self) -> int | None:
        if self.exit_code is None and self.process is not None:
            code = self.process.poll()
            if code is not None:
                self.exit_code = exit_code_of(code)
                self.finished_at = now()
        return self.exit_code

    def message(self) -> str:
        try:
            content = self.message_file.read_bytes()
        except OSError:
            content = b""
        try:
            with self.log_file.open("rb") as log_file:
                log_file.seek(max(0, log_file.seek(0, os.SEEK_END) - 64 * 1024))
                tail = log_file.read()
        except OSError:
            tail = b""
        return podenv.termination_message(
            content,
            tail,
            policy=str(self.container.get("terminationMessagePolicy", "File")),
            failed=bool(self.exit_code),
        )

    def terminated(self) -> Obj:
        code = self.exit_code if self.exit_code is not None else 137
        reason = "StartError" if self.start_error else ("Completed" if code == 0 else "Error")
        state: Obj = {
            "exitCode": code,
            "reason": reason,
            "startedAt": self.started_at or now(),
            "finishedAt": self.finished_at or now(),
            "containerID": f"local://{self.process.pid if self.process else 0}",
        }
        message = self.start_error or self.message()
        if message:
            state["message"] = message
        return state

    def status(self, *, running: bool) -> Obj:
        if running and self.exit_code is None:
            state: Obj = {"running": {"startedAt": self.started_at}}
        else:
            state = {"terminated": self.terminated()}
        status: Obj = {
            "name": self.name,
            "image": self.container.get("image", ""),
            "imageID": "",
            "containerID": f"local://{self.process.pid if self.process else 0}",
            "ready": running and self.exit_code is None,
            "started": running and self.exit_code is None,
            "restartCount": self.restarts,
            "state": state,
        }
        if self.last_state is not None:
            status["lastState"] = {"terminated": self.last_state}
        return status


@dataclass
class PodmanRun(ContainerRun):
    """A container run by `podman run` (container mode); `process` is the podman client."""

    mode: ContainerMode | None = None
    container_name: str = ""

    def start(self) -> None:
        # A restart reuses the name; a client killed before its container exited left one.
        self.remove()
        super().start()

    def remove(self) -> None:
        if self.mode is not None:
            self.mode.run("rm", "--force", "--time=0", self.container_name)

    # The runtime's name for the container, as a real kubelet reports containerd://<id>.
    def terminated(self) -> Obj:
        return {**super().terminated(), "containerID": f"podman://{self.container_name}"}

    def status(self, *, running: bool) -> Obj:
        return {**super().status(running=running), "containerID": f"podman://{self.container_name}"}


@dataclass
class PodRuntime:
    pod: Obj
    directory: Path
    containers: ContainerMode | None = None  # container mode when the pod started
    stop: threading.Event = field(default_factory=threading.Event)
    deleted: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    runs: list[ContainerRun] = field(default_factory=list)

    @property
    def uid(self) -> str:
        return str(self.pod["metadata"]["uid"])

    def kill(self, grace: float) -> None:
        self.stop.set()
        for run in self.runs:
            if run.process is not None and run.process.poll() is None:
                stop_process(run.process, grace=grace)


def _condition(kind: str, status: bool, reason: str = "") -> Obj:
    condition: Obj = {"type": kind, "status": "True" if status else "False"}
    condition["lastTransitionTime"] = now()
    if reason:
        condition["reason"] = reason
    return condition


class LocalKubelet:
    def __init__(
        self,
        client_factory: Callable[[], KubeClient],
        workdir: Path,
        *,
        node_name: str = "videoflix-local",
        images: tuple[ImageMapping, ...] = podenv.DEFAULT_IMAGES,
        workers: int = 8,
    ) -> None:
        self.node_name = node_name
        self.images: list[ImageMapping] = list(images)
        self.workdir = workdir
        self.errors: list[str] = []
        self._client_factory = client_factory
        self._client = client_factory()
        self._watch_client: KubeClient | None = None
        self._fast: FastHandler | None = None
        self._containers: ContainerMode | None = None
        self._lock = threading.Lock()
        self._seen: dict[str, str] = {}  # uid → what was done: bind, run, terminate
        self._runtimes: dict[str, PodRuntime] = {}
        self._dirs: dict[str, Path] = {}  # "ns/name" → the latest pod dir (logs outlive pods)
        self._stopping = threading.Event()
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="kubelet")
        self._watch_thread: threading.Thread | None = None
        self._synced = threading.Event()
        # `kubectl logs` through the API server lands here (pods/log).
        self._logs = LogServer(self.pod_dir, workdir / "logserver")
        cpu = os.cpu_count() or 1
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        self.allocatable = {
            "cpu": str(cpu),
            "memory": str(memory),
            "pods": "100000",
            "ephemeral-storage": str(shutil.disk_usage(workdir.anchor or "/").total),
        }

    # --- public control -------------------------------------------------------------------

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._logs.start()
        self._register_node()
        self._watch_thread = threading.Thread(
            target=self._watch_loop, name="kubelet-watch", daemon=True
        )
        self._watch_thread.start()
        if not self._synced.wait(30):
            raise TimeoutError("local kubelet could not list pods within 30 s")

    def stop(self) -> None:
        self._stopping.set()
        # An open watch would hold up the API server's shutdown: end it, twice if the loop
        # was just reconnecting with a new client.
        for _ in range(2):
            if self._watch_client is not None:
                with contextlib.suppress(Exception):
                    self._watch_client.close()
            if self._watch_thread is not None:
                self._watch_thread.join(timeout=5)
                if not self._watch_thread.is_alive():
                    break
        with self._lock:
            runtimes = list(self._runtimes.values())
        for runtime in runtimes:
            runtime.kill(grace=2.0)
        for runtime in runtimes:
            if runtime.thread is not None:
                runtime.thread.join(timeout=10)
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._logs.stop()
        self._client.close()

    def set_fast_mode(self, handler: FastHandler | None) -> None:
        """Complete every pod that starts from now on at once with the handler's result."""
        self._fast = handler

    @contextlib.contextmanager
    def fast_mode(
        self, message: str | FastHandler = "", exit_code: int = 0
    ) -> Iterator[LocalKubelet]:
        """`with kube.kubelet.fast_mode('{"result": 1}'):` — pods finish instantly."""
        handler: FastHandler
        if callable(message):
            handler = message
        else:
            fixed = FastResult(exit_code, message)

            def handler(_pod: Obj) -> FastResult:
                return fixed

        previous = self._fast
        self._fast = handler
        try:
            yield self
        finally:
            self._fast = previous

    @contextlib.contextmanager
    def container_mode(self, mode: ContainerMode) -> Iterator[LocalKubelet]:
        """`with kube.kubelet.container_mode(ContainerMode(...)):` — pods that start from now on
        run their containers with podman from their images (tests/cluster/containers.py)."""
        previous = self._containers
        self._containers = mode
        try:
            yield self
        finally:
            self._containers = previous

    def add_image(self, mapping: ImageMapping) -> None:
        """Map another image to a local entrypoint (checked before the defaults)."""
        self.images.insert(0, mapping)

    @contextlib.contextmanager
    def mapped_image(self, mapping: ImageMapping) -> Iterator[LocalKubelet]:
        """`with kube.kubelet.mapped_image(ImageMapping("my-api", (sys.executable, "-m", "x"))):`"""
        self.add_image(mapping)
        try:
            yield self
        finally:
            self.images.remove(mapping)

    def pod_dir(self, namespace: str, name: str) -> Path | None:
        return self._dirs.get(f"{namespace}/{name}")

    def logs(self, namespace: str, name: str, container: str | None = None) -> str:
        """A pod's container output (stdout and stderr), kept after the pod is gone."""
        directory = self.pod_dir(namespace, name)
        if directory is None:
            raise KeyError(f"local kubelet never ran pod {namespace}/{name}")
        files = sorted(directory.glob(f"{container or '*'}.log"))
        return "".join(f.read_text(errors="replace") for f in files)

    def pids(self, namespace: str, name: str) -> list[int]:
        """PIDs of a pod's running container processes."""
        with self._lock:
            runtimes = [
                r for r in self._runtimes.values() if pod_key(r.pod) == f"{namespace}/{name}"
            ]
        return [
            run.process.pid
            for runtime in runtimes
            for run in runtime.runs
            if run.process is not None and run.process.poll() is None
        ]

    def running(self) -> list[str]:
        """Pods with a live container process."""
        with self._lock:
            runtimes = list(self._runtimes.values())
        return sorted(
            pod_key(r.pod)
            for r in runtimes
            if any(run.process is not None and run.process.poll() is None for run in r.runs)
        )

    # --- node -----------------------------------------------------------------------------

    def _register_node(self) -> None:
        labels = {
            "kubernetes.io/hostname": self.node_name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
        }
        try:
            self._client.create(
                "/api/v1/nodes",
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {"name": self.node_name, "labels": labels},
                },
            )
        except KubeApiError as error:
            if error.status != 409:
                raise
        ready = {
            "type": "Ready",
            "status": "True",
            "reason": "KubeletReady",
            "message": "videoflix local kubelet is posting ready status",
            "lastHeartbeatTime": now(),
            "lastTransitionTime": now(),
        }
        self._client.patch(
            f"/api/v1/nodes/{self.node_name}/status",
            {
                "status": {
                    "capacity": self.allocatable,
                    "allocatable": self.allocatable,
                    "conditions": [ready],
                    "addresses": [
                        {"type": "InternalIP", "address": podenv.POD_IP},
                        {"type": "Hostname", "address": self.node_name},
                    ],
                    "daemonEndpoints": {"kubeletEndpoint": {"Port": self._logs.port}},
                    "nodeInfo": {
                        "machineID": "",
                        "systemUUID": "",
                        "bootID": "",
                        "kernelVersion": os.uname().release,
                        "osImage": "videoflix local kubelet",
                        "containerRuntimeVersion": "local://processes",
                        "kubeletVersion": "local",
                        "kubeProxyVersion": "",
                        "operatingSystem": "linux",
                        "architecture": "amd64",
                    },
                }
            },
        )

    # --- watch ----------------------------------------------------------------------------

    def _watch_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self._watch_client = self._client_factory()
                listing = self._watch_client.get("/api/v1/pods")
                version = listing["metadata"]["resourceVersion"]
                for pod in listing.get("items", []):
                    self._on_pod("ADDED", pod)
                self._synced.set()
                while not self._stopping.is_set():
                    gone = False
                    for event in self._watch_client.watch(
                        "/api/v1/pods", version, timeout_seconds=60
                    ):
                        kind, obj = event["type"], event["object"]
                        if kind == "ERROR":
                            gone = obj.get("code") == 410
                            if not gone:
                                raise RuntimeError(f"pod watch failed: {obj}")
                            break
                        version = obj["metadata"]["resourceVersion"]
                        if kind != "BOOKMARK":
                            self._on_pod(kind, obj)
                    if gone:
                        break  # relist
            except Exception as error:
                if self._stopping.is_set():
                    return
                self._record(f"pod watch: {error!r}")
                time.sleep(0.5)
            finally:
                if self._watch_client is not None:
                    self._watch_client.close()

    def _on_pod(self, kind: str, pod: Obj) -> None:
        meta, spec = pod["metadata"], pod.get("spec") or {}
        uid = meta["uid"]
        node = spec.get("nodeName")
        if kind == "DELETED":
            with self._lock:
                self._seen.pop(uid, None)
                runtime = self._runtimes.get(uid)
            if runtime is not None:
                runtime.deleted.set()
                self._submit(self._terminate, pod, delete=False)
            return
        if node and node != self.node_name:
            return
        with self._lock:
            done = self._seen.get(uid)
            if meta.get("deletionTimestamp"):
                if node and done != "terminate":
                    self._seen[uid] = "terminate"
                    action: Callable[..., None] | None = self._terminate
                else:
                    action = None
            elif not node:
                action = None if done or spec.get("schedulingGates") else self._bind
                if action:
                    self._seen[uid] = "bind"
            elif done in (None, "bind") and (pod.get("status") or {}).get("phase") in (
                None,
                "",
                "Pending",
            ):
                self._seen[uid] = "run"
                action = self._run
            else:
                action = None
        if action is not None:
            self._submit(action, pod)

    def _submit(self, action: Callable[..., None], pod: Obj, **kwargs: Any) -> None:
        if self._stopping.is_set():
            return

        def guarded() -> None:
            try:
                action(pod, **kwargs)
            except Exception as error:
                if not self._stopping.is_set():
                    self._record(f"{action.__name__} {pod_key(pod)}: {error!r}")

        with contextlib.suppress(RuntimeError):  # executor already shut down
            self._executor.submit(guarded)

    def _record(self, message: str) -> None:
        log.error("local kubelet: %s", message)
        self.errors.append(message)

    # --- actions --------------------------------------------------------------------------

    def _until_taken(self, call: Callable[[], Result]) -> Result:
        """`call` again while the API server is unreachable or answers 429/5xx, as a kubelet
        does; other answers (404, 409, ...) are for the caller."""
        delay = API_RETRY_DELAY
        while True:
            try:
                return call()
            except httpx.TransportError:
                pass
            except KubeApiError as error:
                if error.status != 429 and error.status < 500:
                    raise
            if self._stopping.wait(delay):
                raise RuntimeError("the kubelet stopped before the API server took the call")
            delay = min(delay * 2, API_RETRY_MAX_DELAY)

    def _read(self, path: str) -> Obj | None:
        """An object a pod needs (Secret, ConfigMap), None when it does not exist; read again
        through an API server outage instead of failing the pod for it."""
        return self._until_taken(lambda: self._client.get_or_none(path))

    def _pod_path(self, pod: Obj) -> str:
        meta = pod["metadata"]
        return f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}"

    def _bind(self, pod: Obj) -> None:
        meta = pod["metadata"]
        body = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": meta["name"], "uid": meta["uid"]},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.node_name},
        }
        try:
            self._until_taken(lambda: self._client.create(self._pod_path(pod) + "/binding", body))
        except KubeApiError as error:
            if error.status not in (404, 409):  # gone, or already bound
                raise

    def _write_status(self, pod: Obj, status: Obj) -> bool:
        """Merge-patch the pod status; False when the pod is gone."""
        try:
            self._until_taken(
                lambda: self._client.patch(self._pod_path(pod) + "/status", {"status": status})
            )
            return True
        except KubeApiError as error:
            if error.status in (404, 409):
                return False
            raise

    def _run(self, pod: Obj) -> None:
        fast = self._fast
        if fast is not None:
            self._finish_fast(pod, fast(pod))
            return
        key = pod_key(pod)
        directory = self.workdir / "pods" / f"{key.replace('/', '_')}_{pod['metadata']['uid'][:8]}"
        runtime = PodRuntime(pod=pod, directory=directory, containers=self._containers)
        with self._lock:
            self._runtimes[runtime.uid] = runtime
            self._dirs[key] = directory
        runtime.thread = threading.Thread(
            target=self._pod_thread, args=(runtime,), name=f"pod-{key}", daemon=True
        )
        runtime.thread.start()

    def _finish_fast(self, pod: Obj, result: FastResult) -> None:
        stamp = now()
        state: Obj = {
            "exitCode": result.exit_code,
            "reason": "Completed" if result.exit_code == 0 else "Error",
            "startedAt": stamp,
            "finishedAt": stamp,
        }
        if result.message:
            state["message"] = result.message[: podenv.MAX_TERMINATION_MESSAGE_BYTES]
        statuses = [
            {
                "name": c["name"],
                "image": c.get("image", ""),
                "imageID": "",
                "ready": False,
                "started": False,
                "restartCount": 0,
                "state": {"terminated": state},
            }
            for c in pod["spec"]["containers"]
        ]
        self._write_status(
            pod, self._pod_status(pod, statuses, running=False, phase=self._phase(result.exit_code))
        )

    @staticmethod
    def _phase(exit_code: int) -> str:
        return "Succeeded" if exit_code == 0 else "Failed"

    def _pod_status(
        self,
        pod: Obj,
        statuses: list[Obj],
        *,
        running: bool,
        phase: str,
        start_time: str | None = None,
        reason: str = "",
        message: str = "",
        init_statuses: list[Obj] | None = None,
    ) -> Obj:
        done_reason = "" if running else ("PodCompleted" if phase == "Succeeded" else "PodFailed")
        status: Obj = {
            "phase": phase,
            "hostIP": podenv.POD_IP,
            "hostIPs": [{"ip": podenv.POD_IP}],
            "podIP": podenv.POD_IP,
            "podIPs": [{"ip": podenv.POD_IP}],
            "startTime": start_time or now(),
            "conditions": [
                _condition("PodReadyToStartContainers", running),
                _condition("Initialized", True),
                _condition("Ready", running, done_reason),
                _condition("ContainersReady", running, done_reason),
                _condition("PodScheduled", True),
            ],
            "containerStatuses": statuses,
        }
        if init_statuses:
            status["initContainerStatuses"] = init_statuses
        if reason:
            status["reason"] = reason
        if message:
            status["message"] = message
        return status

    def _terminate(self, pod: Obj, *, delete: bool = True) -> None:
        """Stop a deleted pod's processes, then confirm the deletion as a kubelet does."""
        with self._lock:
            runtime = self._runtimes.get(pod["metadata"]["uid"])
        if runtime is not None:
            grace = float(pod["spec"].get("terminationGracePeriodSeconds", 30))
            runtime.deleted.set()
            runtime.kill(grace=min(grace, MAX_KILL_GRACE))
            if runtime.thread is not None:
                runtime.thread.join(timeout=30)
        if delete:
            options = {
                "apiVersion": "v1",
                "kind": "DeleteOptions",
                "gracePeriodSeconds": 0,
                "preconditions": {"uid": pod["metadata"]["uid"]},
            }
            try:
                self._until_taken(lambda: self._client.delete(self._pod_path(pod), options))
            except KubeApiError as error:
                if error.status != 409:  # 409: a new pod took the name; this one is gone
                    raise
        else:
            self._cleanup(pod)

    def _cleanup(self, pod: Obj) -> None:
        with self._lock:
            runtime = self._runtimes.pop(pod["metadata"]["uid"], None)
        if runtime is not None:
            # emptyDir contents go with the pod, as on a real node; logs stay for debugging.
            shutil.rmtree(runtime.directory / "volumes", ignore_errors=True)

    # --- one pod --------------------------------------------------------------------------

    def _pod_thread(self, runtime: PodRuntime) -> None:
        pod = runtime.pod
        try:
            self._run_pod(runtime)
        except Exception as error:
            if not self._stopping.is_set():
                self._record(f"pod {pod_key(pod)}: {error!r}")
                with contextlib.suppress(Exception):
                    self._fail(runtime, "LocalKubeletError", f"local kubelet error: {error!r}")
        finally:
            for run in runtime.runs:
                if run.process is not None and run.process.poll() is None:
                    stop_process(run.process, grace=1.0)
                if isinstance(run, PodmanRun):
                    run.remove()
            if runtime.deleted.is_set():
                self._cleanup(pod)

    def _fail(self, runtime: PodRuntime, reason: str, message: str) -> None:
        pod = runtime.pod
        statuses = [
            {
                "name": c["name"],
                "image": c.get("image", ""),
                "imageID": "",
                "ready": False,
                "started": False,
                "restartCount": 0,
                "state": {
                    "terminated": {
                        "exitCode": 128,
                        "reason": reason,
                        "message": message,
                        "startedAt": now(),
                        "finishedAt": now(),
                    }
                },
            }
            for c in pod["spec"]["containers"]
        ]
        self._write_status(
            pod,
            self._pod_status(
                pod, statuses, running=False, phase="Failed", reason=reason, message=message
            ),
        )

    def _prepare(self, runtime: PodRuntime, containers: list[Obj]) -> list[ContainerRun]:
        if runtime.containers is not None:
            return self._prepare_podman(runtime, runtime.containers, containers)
        pod = runtime.pod
        namespace = pod["metadata"]["namespace"]
        volumes = self._volumes(runtime)

        def lookup(kind: str) -> podenv.Lookup:
            return lambda name: self._read(f"/api/v1/namespaces/{namespace}/{kind}/{name}")

        runs = []
        for container in containers:
            name = container["name"]
            message_file = runtime.directory / f"{name}.termination-log"
            mapping = {
                str(
                    container.get("terminationMessagePath")
                    or podenv.DEFAULT_TERMINATION_MESSAGE_PATH
                ): str(message_file),
            }
            for mount in container.get("volumeMounts") or []:
                source = volumes.get(mount["name"])
                if source is None:
                    raise ContainerConfigError(f"volume {mount['name']!r} is not in the pod spec")
                host = source / mount["subPath"] if mount.get("subPath") else source
                host.mkdir(parents=True, exist_ok=True)
                mapping[mount["mountPath"]] = str(host)
            paths = PathMap.of(mapping, keep_existing=True)
            resolved = podenv.resolve_env(
                pod,
                container,
                configmap=lookup("configmaps"),
                secret=lookup("secrets"),
                allocatable=self.allocatable,
            )
            home = runtime.directory / "home"
            tmp = runtime.directory / "tmp"
            home.mkdir(parents=True, exist_ok=True)
            tmp.mkdir(parents=True, exist_ok=True)
            # A container sees only its own env, not the test process's (no leaked settings).
            env = {
                "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
                "HOME": str(home),
                "TMPDIR": str(tmp),
                "LANG": "C.UTF-8",
                "HOSTNAME": pod["metadata"]["name"],
            }
            env.update({k: paths.path(v) for k, v in resolved.items()})
            env.setdefault("VIDEOFLIX_RESULT_FILE", str(message_file))
            argv = podenv.container_argv(container, self.images, resolved, paths)
            cwd = Path(paths.path(container["workingDir"])) if container.get("workingDir") else tmp
            if not cwd.is_dir():
                cwd = tmp
            runs.append(
                ContainerRun(
                    container=container,
                    argv=argv,
                    env=env,
                    cwd=cwd,
                    log_file=runtime.directory / f"{name}.log",
                    message_file=message_file,
                )
            )
        return runs

    def _prepare_podman(
        self, runtime: PodRuntime, mode: ContainerMode, containers: list[Obj]
    ) -> list[ContainerRun]:
        """Container mode: the same env and volumes as process mode, run by podman."""
        pod = runtime.pod
        namespace = pod["metadata"]["namespace"]
        volumes = self._volumes(runtime)
        for host in volumes.values():
            host.chmod(0o777)  # a kubelet's emptyDir: writable by any runAsUser

        def lookup(kind: str) -> podenv.Lookup:
            return lambda name: self._read(f"/api/v1/namespaces/{namespace}/{kind}/{name}")

        runs: list[ContainerRun] = []
        for container in containers:
            name = container["name"]
            message_file = runtime.directory / f"{name}.termination-log"
            message_file.write_bytes(b"")
            message_file.chmod(0o666)  # written by the container's (non-root) user
            mounts: list[tuple[Path, str, bool]] = [
                (
                    message_file,
                    str(
                        container.get("terminationMessagePath")
                        or podenv.DEFAULT_TERMINATION_MESSAGE_PATH
                    ),
                    False,
                )
            ]
            for mount in container.get("volumeMounts") or []:
                source = volumes.get(mount["name"])
                if source is None:
                    raise ContainerConfigError(f"volume {mount['name']!r} is not in the pod spec")
                host = source / mount["subPath"] if mount.get("subPath") else source
                host.mkdir(parents=True, exist_ok=True)
                mounts.append((host, str(mount["mountPath"]), bool(mount.get("readOnly"))))
            env = podenv.resolve_env(
                pod,
                container,
                configmap=lookup("configmaps"),
                secret=lookup("secrets"),
                allocatable=self.allocatable,
            )
            image = str(container.get("image") or "")
            container_name = podman.container_name(pod, container)
            argv = podman.run_argv(
                mode,
                pod,
                container,
                name=container_name,
                env=env,
                mounts=mounts,
                image_user=mode.image_user(image),
            )
            runs.append(
                PodmanRun(
                    container=container,
                    argv=argv,
                    env=dict(mode.env),
                    cwd=runtime.directory,
                    log_file=runtime.directory / f"{name}.log",
                    message_file=message_file,
                    mode=mode,
                    container_name=container_name,
                )
            )
        return runs

    def _volumes(self, runtime: PodRuntime) -> dict[str, Path]:
        pod = runtime.pod
        namespace = pod["metadata"]["namespace"]
        result: dict[str, Path] = {}
        for volume in pod["spec"].get("volumes") or []:
            host = runtime.directory / "volumes" / volume["name"]
            host.mkdir(parents=True, exist_ok=True)
            result[volume["name"]] = host
            sources: list[tuple[str, Obj]] = []
            if "configMap" in volume:
                sources.append(("configmaps", volume["configMap"]))
            if "secret" in volume:
                secret = volume["secret"]
                sources.append(("secrets", {**secret, "name": secret.get("secretName", "")}))
            for projected in (volume.get("projected") or {}).get("sources") or []:
                if "configMap" in projected:
                    sources.append(("configmaps", projected["configMap"]))
                if "secret" in projected:
                    sources.append(("secrets", projected["secret"]))
            for kind, ref in sources:
                obj = self._read(f"/api/v1/namespaces/{namespace}/{kind}/{ref.get('name', '')}")
                if obj is None:
                    if ref.get("optional"):
                        continue
                    raise ContainerConfigError(f'{kind[:-1]} "{ref.get("name")}" not found')
                data = podenv.secret_or_configmap_data(obj, secret=kind == "secrets")
                items = ref.get("items") or [{"key": k, "path": k} for k in data]
                for item in items:
                    target = host / item["path"]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_text(data.get(item["key"], ""))
            # Other volume types (the service-account token, hostPath, claims) become empty
            # dirs: Job pods get no API access and no host paths here.
        return result

    def _run_pod(self, runtime: PodRuntime) -> None:
        pod = runtime.pod
        spec = pod["spec"]
        runtime.directory.mkdir(parents=True, exist_ok=True)
        try:
            init_runs = self._prepare_until_ready(runtime, spec.get("initContainers") or [])
            if init_runs is None:
                return
            runs = self._prepare_until_ready(runtime, spec["containers"])
            if runs is None:
                return
        except ImageNotMapped as error:
            self._fail(runtime, "ImageNotMapped", str(error))
            return
        start_time = now()
        started = time.monotonic()
        deadline = spec.get("activeDeadlineSeconds")
        policy = spec.get("restartPolicy", "Always")
        init_statuses: list[Obj] = []
        for run in init_runs:
            runtime.runs = [run]
            outcome = self._supervise(runtime, [run], policy, started, deadline, start_time)
            init_statuses.append(run.status(running=False))
            if outcome != "done" or run.exit_code != 0:
                self._finish(runtime, [run], outcome, start_time, init_statuses, init_failed=True)
                return
        runtime.runs = runs
        for run in runs:
            run.start()
        self._write_status(
            pod,
            self._pod_status(
                pod,
                [r.status(running=True) for r in runs],
                running=True,
                phase="Running",
                start_time=start_time,
                init_statuses=init_statuses,
            ),
        )
        outcome = self._supervise(runtime, runs, policy, started, deadline, start_time)
        self._finish(runtime, runs, outcome, start_time, init_statuses)

    def _prepare_until_ready(
        self, runtime: PodRuntime, containers: list[Obj]
    ) -> list[ContainerRun] | None:
        """Prepare containers; a missing Secret/ConfigMap keeps the pod Pending and retried."""
        reported = ""
        while not runtime.stop.is_set():
            try:
                return self._prepare(runtime, containers)
            except ContainerConfigError as error:
                if str(error) != reported:
                    reported = str(error)
                    waiting = [
                        {
                            "name": c["name"],
                            "image": c.get("image", ""),
                            "imageID": "",
                            "ready": False,
                            "started": False,
                            "restartCount": 0,
                            "state": {
                                "waiting": {
                                    "reason": "CreateContainerConfigError",
                                    "message": reported,
                                }
                            },
                        }
                        for c in runtime.pod["spec"]["containers"]
                    ]
                    status = self._pod_status(runtime.pod, waiting, running=False, phase="Pending")
                    status["conditions"] = [_condition("PodScheduled", True)]
                    self._write_status(runtime.pod, status)
                runtime.stop.wait(CONFIG_RETRY_DELAY)
        return None

    def _supervise(
        self,
        runtime: PodRuntime,
        runs: list[ContainerRun],
        policy: str,
        started: float,
        deadline: int | None,
        start_time: str,
    ) -> str:
        """Wait for the containers: "done", "deadline" or "killed"."""
        for run in runs:
            if not run.started_at:
                run.start()
        while True:
            if runtime.stop.is_set():
                for run in runs:
                    if run.process is not None:
                        stop_process(run.process, grace=0.5)
                    run.poll()
                return "killed"
            if deadline is not None and time.monotonic() - started > deadline:
                for run in runs:
                    if run.process is not None:
                        stop_process(run.process, grace=1.0)
                    run.poll()
                return "deadline"
            restarted = False
            for run in runs:
                code = run.poll()
                if code is None:
                    continue
                if policy == "Always" or (policy == "OnFailure" and code != 0):
                    run.last_state = run.terminated()
                    run.restarts += 1
                    runtime.stop.wait(RESTART_DELAY)
                    if runtime.stop.is_set():
                        continue
                    run.start()
                    restarted = True
            if restarted:
                self._write_status(
                    runtime.pod,
                    self._pod_status(
                        runtime.pod,
                        [r.status(running=True) for r in runs],
                        running=True,
                        phase="Running",
                        start_time=start_time,
                    ),
                )
            if all(run.exit_code is not None for run in runs):
                return "done"
            runtime.stop.wait(0.05)

    def _finish(
        self,
        runtime: PodRuntime,
        runs: list[ContainerRun],
        outcome: str,
        start_time: str,
        init_statuses: list[Obj],
        *,
        init_failed: bool = False,
    ) -> None:
        pod = runtime.pod
        if outcome == "deadline":
            phase, reason, message = "Failed", "DeadlineExceeded", DEADLINE_MESSAGE
        else:
            ok = not init_failed and all(run.exit_code == 0 for run in runs)
            phase, reason, message = ("Succeeded" if ok else "Failed"), "", ""
        if init_failed:
            statuses = [
                {
                    "name": c["name"],
                    "image": c.get("image", ""),
                    "imageID": "",
                    "ready": False,
                    "started": False,
                    "restartCount": 0,
                    "state": {"waiting": {"reason": "PodInitializing"}},
                }
                for c in pod["spec"]["containers"]
            ]
        else:
            statuses = [run.status(running=False) for run in runs]
        self._write_status(
            pod,
            self._pod_status(
                pod,
                statuses,
                running=False,
                phase=phase,
                start_time=start_time,
                reason=reason,
                message=message,
                init_statuses=init_statuses,
            ),
        )
