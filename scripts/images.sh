#!/usr/bin/env bash
# Build the API, operator and transcoder images without Docker and without a registry: podman with
# local Debian bookworm bases made by mmdebstrap and uv from its PyPI wheel (tests/images/build.py).
# Cached by the hash of each image's inputs in ~/.cache/videoflix/podman: only a change rebuilds.
# Usage: scripts/images.sh [api|operator|transcoder ...] [--print-refs]
#   Each image is tagged localhost/videoflix-<name>:<input hash> and localhost/videoflix-<name>:local.
#   Run the images with the same podman setup:  scripts/images.sh --podman run --rm …
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.local/bin:$PATH"
if [ "${1:-}" = "--podman" ]; then
  shift
  cache="${VIDEOFLIX_CACHE:-$HOME/.cache/videoflix}/podman"
  exec env CONTAINERS_CONF="$cache/containers.conf" CONTAINERS_STORAGE_CONF="$cache/storage.conf" \
    podman --runtime runc "$@"
fi
exec nice -n 10 uv run --frozen python -m tests.images.build "$@"
