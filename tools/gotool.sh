#!/usr/bin/env bash
# Print the path of a pinned Go-built tool, building it once per version into the cache.
# Usage: tools/gotool.sh NAME   (NAME from tools/go-tools.txt)
set -euo pipefail
name=${1:?usage: tools/gotool.sh NAME}
here=$(cd "$(dirname "$0")" && pwd)
spec=$(awk -v n="$name" '$1 == n { print $2 }' "$here/go-tools.txt")
[ -n "$spec" ] || { echo "gotool: unknown tool '$name' (see tools/go-tools.txt)" >&2; exit 2; }
version=${spec##*@}
cache=${VIDEOFLIX_CACHE:-$HOME/.cache/videoflix}
dir="$cache/$name-$version"
binary="$dir/$(basename "${spec%@*}")"
if [ ! -x "$binary" ]; then
  command -v go >/dev/null || { echo "gotool: Go is required to build $name (install Go >= 1.24)" >&2; exit 3; }
  echo "gotool: building $spec (first run on this machine only)" >&2
  mkdir -p "$dir.tmp"
  # CGO off: static binaries, no C toolchain needed; the build is cached by Go too.
  CGO_ENABLED=0 GOBIN="$dir.tmp" GOFLAGS=-trimpath go install "$spec" >&2
  rm -rf "$dir" && mv "$dir.tmp" "$dir"
fi
echo "$binary"
