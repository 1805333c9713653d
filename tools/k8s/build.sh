#!/usr/bin/env bash
# Build (once per machine) the pinned Kubernetes control plane used by the cluster tests:
# kube-apiserver, kube-controller-manager (k8s.io/kubernetes) and etcd (go.etcd.io/etcd/server/v3).
# The versions are pinned by go.mod/go.sum next to this script: every k8s.io staging module is
# replaced by its published module of the same release, so the build needs only the Go module proxy.
#
# Usage: tools/k8s/build.sh        prints the directory holding the three binaries
# Env:   VIDEOFLIX_CACHE           cache root (default ~/.cache/videoflix)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
k8s_version=$(awk '$1 == "k8s.io/kubernetes" { print $2 }' "$here/go.mod")
etcd_version=$(awk '$1 == "go.etcd.io/etcd/server/v3" { print $2 }' "$here/go.mod")
cache=${VIDEOFLIX_CACHE:-$HOME/.cache/videoflix}
dir="$cache/k8s-$k8s_version"
binaries=(kube-apiserver kube-controller-manager etcd)

complete() {
  local b
  for b in "${binaries[@]}"; do [ -x "$dir/$b" ] || return 1; done
}

if ! complete; then
  mkdir -p "$cache"
  # Parallel test sessions on a fresh machine: one builds, the others wait and reuse.
  exec 9>"$cache/k8s-$k8s_version.lock"
  flock 9
fi
if ! complete; then
  command -v go >/dev/null || {
    echo "k8s build: Go >= 1.21 is required to build the test control plane (it fetches the" \
      "pinned toolchain itself): install it from https://go.dev/dl/ or apt-get install golang-go" >&2
    exit 3
  }
  echo "k8s build: building kube-apiserver/kube-controller-manager $k8s_version and etcd" \
    "$etcd_version into $dir (first run on this machine only, ~15-30 min on 2 cores)" >&2
  tmp=$(mktemp -d "$cache/k8s-$k8s_version.tmp.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  minor=${k8s_version#v1.}; minor=${minor%%.*}
  # The same version stamp the release build writes, so clients see a real server version
  # instead of v0.0.0-master.
  vpkg=k8s.io/component-base/version
  ldflags="-s -w -X $vpkg.gitVersion=$k8s_version -X $vpkg.gitMajor=1 -X $vpkg.gitMinor=$minor"
  ldflags+=" -X $vpkg.gitTreeState=clean -X $vpkg.buildDate=1970-01-01T00:00:00Z"
  # CGO off: static binaries, no C toolchain; -mod=readonly: go.sum must already pin everything.
  cd "$here"
  export CGO_ENABLED=0 GOFLAGS="-mod=readonly -trimpath -buildvcs=false"
  go build -ldflags "$ldflags" -o "$tmp/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver >&2
  go build -ldflags "$ldflags" -o "$tmp/kube-controller-manager" \
    k8s.io/kubernetes/cmd/kube-controller-manager >&2
  go build -ldflags "-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3 >&2
  chmod 755 "$tmp"
  rm -rf "$dir" && mv "$tmp" "$dir"
  trap - EXIT
fi
echo "$dir"
