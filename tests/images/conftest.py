"""The three images, built once per session (cached by input hash, tests/images/build.py)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.containers import ContainerMode
from tests.fixtures.procs import missing_tool, wait_until
from tests.images import build
from tests.operator.conftest import OperatorProcess

# How every container of these tests runs, as the chart's pods do: no capability, no privilege
# escalation, nothing writable but the mounted volumes. Host network: the test servers listen on
# loopback.
HARDENED = (
    "--read-only",
    "--cap-drop=ALL",
    "--security-opt=no-new-privileges",
    "--network=host",
)


@dataclass(frozen=True)
class Images:
    podman: build.Podman
    refs: dict[str, str]  # "api" | "operator" | "transcoder" → localhost/videoflix-…:<hash>

    def run(
        self, *args: str, timeout: float = 300, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            self.podman.argv("run", "--rm", *args),
            env=self.podman.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"podman run exited {result.returncode}\n{result.stdout[-3000:]}\n"
                f"{result.stderr[-3000:]}"
            )
        return result

    def container_mode(self) -> ContainerMode:
        """The local kubelet's container mode with this podman setup."""
        return ContainerMode(podman=tuple(self.podman.argv()), env=self.podman.env())

    def config(self, name: str) -> dict[str, Any]:
        return dict(self.podman.inspect(self.refs[name])["Config"])


@pytest.fixture(scope="session")
def images() -> Images:
    missing = build.available()
    if missing:
        missing_tool(f"image tests need podman: {missing}")
    refs, _report = build.build()
    return Images(build.Podman(), refs)


def wait_until_or_log(check: Callable[[], bool], what: str, log: Path, timeout: float = 90) -> None:
    try:
        wait_until(check, what, timeout=timeout)
    except TimeoutError as error:
        raise AssertionError(f"{error}\n{log.read_text(errors='replace')[-3000:]}") from None


def env_args(env: dict[str, str]) -> list[str]:
    return [f"--env={key}={value}" for key, value in sorted(env.items())]


def writable_dir(path: Path) -> Path:
    """A host dir the images' uid 10001 can write (what an emptyDir is to a pod)."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o777)
    return path


@dataclass
class ContainerOperator(OperatorProcess):
    """The operator from its image, with the chart's command, as a real pod runs it."""

    images: Images | None = None
    mounts: tuple[tuple[str, str], ...] = ()  # (host file, path in the container), read-only
    name: str = field(default_factory=lambda: f"videoflix-operator-{os.urandom(4).hex()}")

    def argv(self) -> list[str]:
        assert self.images is not None
        # Only what the chart's Deployment sets; nothing of the test process's env.
        env = {k: v for k, v in self.env.items() if k.startswith("VIDEOFLIX_")}
        env["KUBECONFIG"] = self.env["KUBECONFIG"]
        command = [str(c) for c in self.images.config("operator")["Cmd"]]
        liveness = f"--liveness=http://127.0.0.1:{self.liveness_port}/healthz"
        # The chart's command: the image's CMD with the watch scope and its own health port.
        command = [liveness if c.startswith("--liveness") else c for c in command]
        command += ["--namespace", self.namespace]
        return self.images.podman.argv(
            "run",
            "--rm",
            f"--name={self.name}",
            *HARDENED,
            "--tmpfs=/tmp:rw,size=64m",
            *(f"--volume={host}:{path}:ro" for host, path in self.mounts),
            *env_args(env),
            self.images.refs["operator"],
            *command,
        )

    def start(self) -> None:
        assert self.images is not None
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.argv(), env=self.images.podman.env(), stdout=log, stderr=subprocess.STDOUT
        )
        log.close()

    def stop(self) -> None:
        super().stop()  # SIGTERM to `podman run`, which hands it to kopf (PID 1)
        if self.images is not None:
            self.images.podman.run("rm", "--force", "--time=2", self.name, check=False)


def readable_copy(path: str, directory: Path) -> str:
    """A copy the images' uid 10001 can read (the control plane keeps its files 0600)."""
    copy = writable_dir(directory) / Path(path).name
    copy.write_bytes(Path(path).read_bytes())
    copy.chmod(0o644)
    return str(copy)


def operator_mounts(kubeconfig: str, ca_file: str, directory: Path) -> tuple[tuple[str, str], ...]:
    """The operator's kubeconfig and the CA it names, readable in the container at those paths."""
    return tuple((readable_copy(path, directory), path) for path in (kubeconfig, ca_file))


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Path]:
    yield writable_dir(tmp_path / "scratch")
