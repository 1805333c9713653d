"""Build the three images without Docker or a registry: podman, local bases from Debian packages.

    python -m tests.images.build [api|operator|transcoder ...]   (scripts/images.sh wraps this)

Bases are made with mmdebstrap (Debian bookworm; its python3 is 3.11, what uv.lock expects) and
`podman import`; `uv` comes from its PyPI wheel (sha256 checked) as a one-file image. The real
Dockerfiles then build with those bases as build arguments. Nothing pulls a prebuilt image
(`--pull=never`).

Every image is tagged with the hash of its inputs (recipe, Dockerfile, the files its COPY lines
send, the bases' tags), in podman storage under ~/.cache/videoflix/podman: an image whose tag
exists is not rebuilt, so only a change rebuilds.

Host quirks (see issue 16): crun refuses this host's hybrid cgroup layout, so podman runs with
runc; podman's default ulimits are refused, so containers.conf sets `default_ulimits = []`.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import io
import json
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("videoflix.images")

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("VIDEOFLIX_CACHE") or Path.home() / ".cache" / "videoflix")
PODMAN_DIR = CACHE / "podman"
MIRROR = os.environ.get("VIDEOFLIX_DEBIAN_MIRROR", "http://deb.debian.org/debian")
SECURITY_MIRROR = os.environ.get(
    "VIDEOFLIX_DEBIAN_SECURITY_MIRROR", "http://deb.debian.org/debian-security"
)
PYPI = os.environ.get("VIDEOFLIX_PYPI_SIMPLE", "https://pypi.org/simple")
SUITE = "bookworm"
# Bumped when the way a base is made changes, so old bases are not reused.
RECIPE_VERSION = 1
# What the slim images leave out: documentation and translations (copyright files stay).
DPKG_EXCLUDES = (
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/locale/*",
    "path-exclude=/usr/share/info/*",
)


# This machine's own CAs (e.g. a TLS-inspecting egress proxy's): the local bases trust them too,
# or uv and pip inside the builds could not reach PyPI. Public bases never contain them.
LOCAL_CA_DIR = Path(os.environ.get("VIDEOFLIX_LOCAL_CA_DIR", "/usr/local/share/ca-certificates"))
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def local_cas() -> list[Path]:
    return sorted(LOCAL_CA_DIR.glob("*.crt")) if LOCAL_CA_DIR.is_dir() else []


def trust_env(cas: Sequence[Path]) -> tuple[str, ...]:
    """With local CAs, point uv, pip and requests at the system bundle (their defaults are
    bundled root lists that cannot know a local CA)."""
    if not cas:
        return ()
    names = ("SSL_CERT_FILE", "PIP_CERT", "REQUESTS_CA_BUNDLE")
    return tuple(f"{name}={CA_BUNDLE}" for name in names)


@dataclass(frozen=True)
class BaseImage:
    """A Debian rootfs from mmdebstrap, imported as a local image."""

    name: str
    packages: tuple[str, ...]

    def env(self) -> tuple[str, ...]:
        return ("LANG=C.UTF-8", *trust_env(local_cas()))

    def recipe(self) -> dict[str, object]:
        return {
            "version": RECIPE_VERSION,
            "suite": SUITE,
            "variant": "minbase",
            "packages": sorted(self.packages),
            "dpkg": list(DPKG_EXCLUDES),
            "env": list(self.env()),
            "cas": [digest([path.read_bytes()]) for path in local_cas()],
        }

    def ref(self) -> str:
        return f"localhost/{self.name}:{digest([json.dumps(self.recipe(), sort_keys=True)])}"


@dataclass(frozen=True)
class UvImage:
    """`uv` (and `uvx`) from the PyPI wheel, at the root of an otherwise empty image."""

    version: str

    def ref(self) -> str:
        return f"localhost/videoflix-uv:{self.version}"


@dataclass(frozen=True)
class AppImage:
    """One of our Dockerfiles, built with local bases as build arguments."""

    name: str
    dockerfile: Path
    context: Path
    bases: dict[str, BaseImage | UvImage] = field(default_factory=dict)

    def build_args(self) -> dict[str, str]:
        return {arg: base.ref() for arg, base in sorted(self.bases.items())}

    def inputs(self) -> list[Path]:
        return context_files(self.context, copy_sources(self.dockerfile.read_text()))

    def ref(self) -> str:
        parts: list[str | bytes] = [self.dockerfile.read_bytes()]
        parts += [json.dumps(self.build_args(), sort_keys=True)]
        for path in self.inputs():
            parts += [str(path.relative_to(self.context)), path.read_bytes()]
        return f"localhost/{self.name}:{digest(parts)}"

    def latest(self) -> str:
        """The name the chart's local values and skaffold use: `localhost/<name>:local`."""
        return f"localhost/{self.name}:local"


PYTHON_BASE = BaseImage(
    "videoflix-base-python", ("python3", "ca-certificates", "tzdata", "netbase", "passwd")
)
DEBIAN_BASE = BaseImage("videoflix-base-debian", ("ca-certificates", "passwd"))


def uv_version(dockerfile: str) -> str:
    """The uv version a Dockerfile copies from `ghcr.io/astral-sh/uv:<version>`."""
    match = re.search(r"^ARG UV_IMAGE=\S+/uv:(\S+)$", dockerfile, re.MULTILINE)
    if match is None:
        raise ValueError("the Dockerfile has no `ARG UV_IMAGE=…/uv:<version>`")
    return match.group(1)


def images() -> dict[str, AppImage]:
    uv = UvImage(uv_version((REPO / "api" / "Dockerfile").read_text()))
    python_bases: dict[str, BaseImage | UvImage] = {"PYTHON_IMAGE": PYTHON_BASE, "UV_IMAGE": uv}
    return {
        "api": AppImage("videoflix-api", REPO / "api" / "Dockerfile", REPO, python_bases),
        "operator": AppImage(
            "videoflix-operator", REPO / "operator" / "Dockerfile", REPO, python_bases
        ),
        "transcoder": AppImage(
            "videoflix-transcoder",
            REPO / "transcoder-image" / "Dockerfile",
            REPO / "transcoder-image",
            {"DEBIAN_IMAGE": DEBIAN_BASE},
        ),
    }


# --- inputs ---------------------------------------------------------------------------------


def digest(parts: Iterable[str | bytes]) -> str:
    h = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "big") + data)
    return h.hexdigest()[:16]


def copy_sources(dockerfile: str) -> list[str]:
    """The context paths a Dockerfile's COPY/ADD lines send (not `--from=` stages)."""
    text = re.sub(r"\\\n", " ", dockerfile)
    sources: list[str] = []
    for line in text.splitlines():
        words = line.split()
        if len(words) < 3 or words[0].upper() not in ("COPY", "ADD"):
            continue
        args = [w for w in words[1:] if not w.startswith("--")]
        if any(w.startswith("--from=") for w in words[1:]):
            continue
        sources += args[:-1]
    return sources


# Never part of an image: what Python and editors leave in a source tree.
IGNORED = ("__pycache__", "*.pyc", ".mypy_cache", ".pytest_cache", ".ruff_cache")


def context_files(context: Path, sources: Sequence[str]) -> list[Path]:
    files: set[Path] = set()
    for source in sources:
        root = context / source
        if root.is_file():
            files.add(root)
            continue
        if not root.is_dir():
            raise FileNotFoundError(f"COPY source {source!r} is not in {context}")
        for directory, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not ignored(d))
            files.update(Path(directory) / f for f in filenames if not ignored(f))
    return sorted(files)


def ignored(name: str) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in IGNORED)


# --- podman ---------------------------------------------------------------------------------

CONTAINERS_CONF = """\
# Written by tests/images/build.py. crun refuses this host's hybrid cgroup layout: runc.
# The default ulimits are refused by this kernel: none.
[containers]
default_ulimits = []
log_driver = "k8s-file"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""


@dataclass(frozen=True)
class Podman:
    """podman with its config and storage under ~/.cache/videoflix/podman."""

    directory: Path = PODMAN_DIR

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "CONTAINERS_CONF": str(self.directory / "containers.conf"),
            "CONTAINERS_STORAGE_CONF": str(self.directory / "storage.conf"),
        }

    def setup(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        run_root = Path(tempfile.gettempdir()) / f"videoflix-podman-{os.getuid()}"
        storage = (
            "[storage]\n"
            'driver = "overlay"\n'
            f'graphroot = "{self.directory / "storage"}"\n'
            f'runroot = "{run_root}"\n'
        )
        for name, text in (("containers.conf", CONTAINERS_CONF), ("storage.conf", storage)):
            path = self.directory / name
            if not path.exists() or path.read_text() != text:
                path.write_text(text)

    def argv(self, *args: str) -> list[str]:
        return ["podman", "--runtime", "runc", *args]

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            self.argv(*args), env=self.env(), capture_output=True, text=True, check=False
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"podman {' '.join(args[:3])} … failed ({result.returncode}):\n"
                f"{result.stderr[-4000:]}"
            )
        return result

    def build_log(self, name: str, *args: str) -> None:
        """`podman build …` with its output in ~/.cache/videoflix/podman/logs/<name>.log."""
        logs = self.directory / "logs"
        logs.mkdir(exist_ok=True)
        path = logs / f"{name}.log"
        with path.open("wb") as out:
            code = subprocess.run(
                self.argv("build", *args), env=self.env(), stdout=out, stderr=subprocess.STDOUT
            ).returncode
        if code != 0:
            tail = path.read_text(errors="replace")[-4000:]
            raise RuntimeError(f"podman build of {name} failed ({code}), log {path}:\n{tail}")

    def exists(self, ref: str) -> bool:
        return self.run("image", "exists", ref, check=False).returncode == 0

    def inspect(self, ref: str) -> dict[str, Any]:
        data = json.loads(self.run("image", "inspect", ref).stdout)
        return dict(data[0])

    def size(self, ref: str) -> int:
        return int(str(self.inspect(ref)["Size"]))


def available() -> str | None:
    """None when images can be built here, else what is missing."""
    missing = [tool for tool in ("podman", "runc", "mmdebstrap") if shutil.which(tool) is None]
    if missing:
        return f"{', '.join(missing)} not installed (scripts/bootstrap.sh installs them)"
    return None


# --- builders -------------------------------------------------------------------------------


@dataclass
class Report:
    built: dict[str, float] = field(default_factory=dict)  # ref → seconds
    cached: list[str] = field(default_factory=list)


def build_base(podman: Podman, base: BaseImage, report: Report) -> str:
    ref = base.ref()
    if podman.exists(ref):
        report.cached.append(ref)
        return ref
    started = time.monotonic()
    log.info("making %s with mmdebstrap", ref)
    with tempfile.TemporaryDirectory(prefix="videoflix-base-") as tmp:
        rootfs = Path(tmp) / "rootfs.tar"
        cas = local_cas()
        hooks = (
            [
                f'--customize-hook=mkdir -p "$1{LOCAL_CA_DIR}"',
                f"--customize-hook=copy-in {' '.join(map(str, cas))} {LOCAL_CA_DIR}",
                '--customize-hook=chroot "$1" update-ca-certificates',
            ]
            if cas
            else []
        )
        subprocess.run(
            [
                "mmdebstrap",
                "--quiet",
                "--variant=minbase",
                f"--include={','.join(base.packages)}",
                *(f"--dpkgopt={option}" for option in DPKG_EXCLUDES),
                *hooks,
                SUITE,
                str(rootfs),
                f"deb {MIRROR} {SUITE} main",
                f"deb {MIRROR} {SUITE}-updates main",
                f"deb {SECURITY_MIRROR} {SUITE}-security main",
            ],
            check=True,
            capture_output=True,
        )
        changes = [f"--change=ENV {e}" for e in base.env()] + ['--change=CMD ["bash"]']
        podman.run("import", *changes, str(rootfs), ref)
    report.built[ref] = time.monotonic() - started
    drop_older(podman, ref)
    return ref


def uv_wheel(version: str) -> tuple[str, str]:
    """URL and sha256 of uv's manylinux wheel for this machine, from PyPI's simple API (PEP 691)."""
    request = urllib.request.Request(
        f"{PYPI}/uv/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        files = json.load(response)["files"]
    machine = platform.machine()
    for file in files:
        name = str(file["filename"])
        if name.startswith(f"uv-{version}-") and name.endswith(f"manylinux2014_{machine}.whl"):
            return str(file["url"]), str(file["hashes"]["sha256"])
    raise RuntimeError(f"uv {version} has no manylinux wheel for {machine}")


def drop_older(podman: Podman, ref: str) -> None:
    """Untag this image's builds from older inputs, so storage does not grow with every change
    (untagged build stages stay: they are the layer cache of the next build)."""
    repository, _, current = ref.rpartition(":")
    listing = podman.run(
        "images",
        "--noheading",
        "--format={{.Repository}}:{{.Tag}}",
        f"--filter=reference={repository}",
    ).stdout.split()
    old = [r for r in listing if r.rpartition(":")[2] not in (current, "local")]
    if old:
        podman.run("rmi", "--force", *old, check=False)


def build_uv(podman: Podman, uv: UvImage, report: Report) -> str:
    ref = uv.ref()
    if podman.exists(ref):
        report.cached.append(ref)
        return ref
    started = time.monotonic()
    url, sha256 = uv_wheel(uv.version)
    with urllib.request.urlopen(url, timeout=300) as response:
        wheel = response.read()
    if hashlib.sha256(wheel).hexdigest() != sha256:
        raise RuntimeError(f"uv wheel {url} does not match PyPI's sha256")
    import zipfile

    with tempfile.TemporaryDirectory(prefix="videoflix-uv-") as tmp:
        layer = Path(tmp) / "uv.tar"
        with zipfile.ZipFile(io.BytesIO(wheel)) as archive, tarfile.open(layer, "w") as tar:
            for tool in ("uv", "uvx"):
                data = archive.read(f"uv-{uv.version}.data/scripts/{tool}")
                info = tarfile.TarInfo(tool)
                info.size, info.mode = len(data), 0o755
                tar.addfile(info, io.BytesIO(data))
        podman.run("import", str(layer), ref)
    report.built[ref] = time.monotonic() - started
    return ref


def build_app(podman: Podman, image: AppImage, report: Report) -> str:
    for base in image.bases.values():
        if isinstance(base, UvImage):
            build_uv(podman, base, report)
        else:
            build_base(podman, base, report)
    ref = image.ref()
    if podman.exists(ref):
        report.cached.append(ref)
    else:
        started = time.monotonic()
        log.info("building %s", ref)
        args = [f"--build-arg={k}={v}" for k, v in image.build_args().items()]
        podman.build_log(
            image.name,
            "--isolation=chroot",
            "--pull=never",
            "--layers",
            "--network=host",
            f"--file={image.dockerfile}",
            *args,
            f"--tag={ref}",
            str(image.context),
        )
        report.built[ref] = time.monotonic() - started
    podman.run("tag", ref, image.latest())
    # After moving :local, so the previous build has no tag left and goes away entirely.
    drop_older(podman, ref)
    return ref


def build(names: Sequence[str] = (), podman: Podman | None = None) -> tuple[dict[str, str], Report]:
    """Build (or find cached) the named images, all when none are named: name → ref."""
    podman = podman or Podman()
    podman.setup()
    report = Report()
    wanted = images()
    refs = {name: build_app(podman, wanted[name], report) for name in (names or list(wanted))}
    return refs, report


@dataclass(frozen=True)
class Summary:
    name: str
    ref: str
    megabytes: float
    seconds: float | None


def summaries(podman: Podman, refs: dict[str, str], report: Report) -> Iterator[Summary]:
    for name, ref in refs.items():
        yield Summary(name, ref, podman.size(ref) / 1e6, report.built.get(ref))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("images", nargs="*", help=f"any of {', '.join(images())} (default: all)")
    parser.add_argument("--print-refs", action="store_true", help="only print name=ref lines")
    parser.add_argument(
        "--tag", metavar="REF", help="also tag the one image named as REF (skaffold's $IMAGE)"
    )
    options = parser.parse_args(argv)
    unknown = sorted(set(options.images) - set(images()))
    if unknown:
        parser.error(f"unknown images: {', '.join(unknown)}")
    if options.tag and len(options.images) != 1:
        parser.error("--tag needs exactly one image name")
    logging.basicConfig(level=logging.INFO, format="[images] %(message)s", stream=sys.stderr)
    missing = available()
    if missing:
        log.error("%s", missing)
        return 3
    refs, report = build(options.images)
    podman = Podman()
    if options.tag:
        podman.run("tag", refs[options.images[0]], options.tag)
    for ref, seconds in report.built.items():
        log.info("built %s in %.0f s", ref, seconds)
    for summary in summaries(podman, refs, report):
        how = "cached" if summary.seconds is None else f"built in {summary.seconds:.0f} s"
        sys.stdout.write(
            f"{summary.name}={summary.ref}\n"
            if options.print_refs
            else f"{summary.name:<11} {summary.ref}  {summary.megabytes:.0f} MB  ({how})\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
