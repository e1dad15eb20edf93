#!/usr/bin/env bash
# Builds the test bed's control plane (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl), the container node's kubelet and its pause program (a static Go
# program, hack/pause/pause.go: the pod sandbox's image) from their Go modules through the Go module proxy, into a cache
# directory keyed by version, and helm (build-helm.sh) beside it. A warm cache returns at
# once; `--is-cached` only tells whether the cache is warm (exit status 0). Prints the folder
# of the Kubernetes binaries.
#
# k8s.io/kubernetes cannot be `go install`ed: its go.mod replaces every staging module
# (k8s.io/api, ...) with a local path and requires them at v0.0.0. A wrapper module that
# requires k8s.io/kubernetes and replaces each staging module with its published
# k8s.io/<name> v0.Y.Z release builds it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"

cache_root=${CONVEYOR_CACHE:-$HOME/.cache/conveyor}
bin_dir="$cache_root/testbed/k8s-$KUBERNETES_VERSION-etcd-$ETCD_VERSION/bin"
binaries=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet pause)

all_built() {
  for b in "${binaries[@]}"; do [ -x "$bin_dir/$b" ] || return 1; done
}

if [ "${1:-}" = "--is-cached" ]; then
  all_built && "$here/build-helm.sh" --is-cached
  exit
fi
"$here/build-helm.sh" >/dev/null
if all_built; then
  echo "$bin_dir"
  exit 0
fi

command -v go >/dev/null || { echo "Go is needed to build the test bed (go1.26 or newer)" >&2; exit 1; }
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOTOOLCHAIN=local
work=$(mktemp -d "$cache_root/build.XXXXXX" 2>/dev/null || { mkdir -p "$cache_root"; mktemp -d "$cache_root/build.XXXXXX"; })
trap 'rm -rf "$work"' EXIT
mkdir -p "$bin_dir"
started=$(date +%s)

# etcd: its server module has a main package and builds from a plain wrapper.
if [ ! -x "$bin_dir/etcd" ]; then
  mkdir -p "$work/etcd" && cd "$work/etcd"
  go mod init conveyor.dev/testbed/etcd >/dev/null 2>&1
  cat > tools.go <<'GO'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
GO
  go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >&2
  go build -trimpath -ldflags='-s -w' -o "$bin_dir/etcd.tmp" go.etcd.io/etcd/server/v3 >&2
  mv "$bin_dir/etcd.tmp" "$bin_dir/etcd"
  echo "built etcd $ETCD_VERSION" >&2
fi

# The pod sandbox's program (the container node's "pause" image, made by testbed/containers.py):
# waits for SIGTERM and reaps children; static, so the image is FROM scratch.
if [ ! -x "$bin_dir/pause" ]; then
  mkdir -p "$work/pause" && cp "$here/pause/pause.go" "$work/pause/" && cd "$work/pause"
  go mod init conveyor.dev/testbed/pause >/dev/null 2>&1
  go build -trimpath -ldflags='-s -w' -o "$bin_dir/pause.tmp" . >&2
  mv "$bin_dir/pause.tmp" "$bin_dir/pause"
fi

# Kubernetes: a wrapper that maps each staging module to its published release.
mkdir -p "$work/k8s" && cd "$work/k8s"
minor=${KUBERNETES_VERSION#v1.}
staging_version="v0.$minor"
upstream_mod=$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')
staging=$(sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\1#p' "$upstream_mod" | sort -u)
[ -n "$staging" ] || { echo "no staging modules found in $upstream_mod" >&2; exit 1; }
{
  echo "module conveyor.dev/testbed/kubernetes"
  echo
  echo "go $(sed -n 's/^go //p' "$upstream_mod")"
  echo
  echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
  echo
  echo "replace ("
  for m in $staging; do echo "	$m => $m $staging_version"; done
  echo ")"
} > go.mod
cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
GO
go mod tidy >&2
for b in kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet; do
  [ -x "$bin_dir/$b" ] && continue
  go build -trimpath -ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$KUBERNETES_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${minor%%.*}" \
    -o "$bin_dir/$b.tmp" "k8s.io/kubernetes/cmd/$b" >&2
  mv "$bin_dir/$b.tmp" "$bin_dir/$b"
  echo "built $b $KUBERNETES_VERSION" >&2
done
echo "built the test bed in $(( $(date +%s) - started ))s" >&2
echo "$bin_dir"
