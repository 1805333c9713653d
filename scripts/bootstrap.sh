#!/usr/bin/env bash
# Install everything the platform and its tests need on a fresh Debian machine; cheap when already done.
#   Debian packages (PostgreSQL, FFmpeg, Chromium; wrk for benchmarks), uv and the locked Python environment,
#   and the Go-built servers (MinIO, Helm, the Kubernetes control plane) cached in ~/.cache/videoflix;
#   podman, runc and mmdebstrap, and the three images built with them (scripts/images.sh, cached).
# Usage: scripts/bootstrap.sh [--runtime-only]   (--runtime-only: what the embedded demo needs, no test servers)
set -euo pipefail
cd "$(dirname "$0")/.."

runtime_only=false
[ "${1:-}" = "--runtime-only" ] && runtime_only=true

say() { printf '\033[1m[bootstrap]\033[0m %s\n' "$*" >&2; }

apt_packages=(ffmpeg)
if ! $runtime_only; then
  apt_packages+=(postgresql postgresql-client chromium wrk)
  # The images are built without Docker (scripts/images.sh): podman/buildah with runc (crun refuses
  # this kind of host's cgroup layout), bases from Debian packages with mmdebstrap.
  apt_packages+=(podman buildah runc mmdebstrap uidmap)
fi
missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi

if ! command -v uv >/dev/null 2>&1; then
  say "installing uv"
  python3 -m pip install --quiet --user 'uv>=0.5' 2>/dev/null || python3 -m pip install --quiet 'uv>=0.5'
  export PATH="$HOME/.local/bin:$PATH"
fi

say "syncing the Python environment from uv.lock"
uv sync --all-packages --frozen --quiet

if ! $runtime_only; then
  command -v go >/dev/null 2>&1 || { say "Go >= 1.24 is required to build the test servers"; exit 3; }
  for tool in minio helm promtool prometheus; do
    tools/gotool.sh "$tool" >/dev/null
  done
  if [ -x tools/k8s/build.sh ]; then
    tools/k8s/build.sh >/dev/null
  fi
  # Cached by the hash of each image's inputs: a second run only checks three tags. Not fatal: the
  # image tests build whatever is missing (and report why it failed).
  scripts/images.sh >/dev/null || say "building the images failed; tests/images will retry"
fi
say "ready"
