#!/usr/bin/env bash
# Builds helm from its Go module through the Go module proxy (CGO_ENABLED=0), pinned by
# HELM_VERSION in versions.env, into a cache directory keyed by that version. Prints the
# folder that holds `helm`. A warm cache returns at once; `--is-cached` only tells whether the
# cache is warm (exit status 0).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"

cache_root=${CONVEYOR_CACHE:-$HOME/.cache/conveyor}
bin_dir="$cache_root/tools/helm-$HELM_VERSION/bin"

if [ "${1:-}" = "--is-cached" ]; then
  [ -x "$bin_dir/helm" ]
  exit
fi
if [ -x "$bin_dir/helm" ]; then
  echo "$bin_dir"
  exit 0
fi

command -v go >/dev/null || { echo "Go is needed to build helm (go1.26 or newer)" >&2; exit 1; }
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOTOOLCHAIN=local
mkdir -p "$bin_dir"
work=$(mktemp -d "$cache_root/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
started=$(date +%s)
major=${HELM_VERSION%%.*}
module="helm.sh/helm/$major"
# The variables helm's own Makefile sets: its version, and the Kubernetes version that
# `helm template` and `helm lint` assume, from the k8s.io/client-go it requires (v0.Y.Z
# means Kubernetes 1.Y).
gomod=$(go mod download -json "$module@$HELM_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')
k8s_minor=$(sed -n 's#^[[:space:]]*k8s.io/client-go v0\.\([0-9]*\)\..*#\1#p' "$gomod" | head -1)
[ -n "$k8s_minor" ] || { echo "no k8s.io/client-go in $gomod" >&2; exit 1; }
ldflags="-s -w -X $module/internal/version.version=$HELM_VERSION"
for pkg in pkg/chartutil pkg/lint/rules; do
  ldflags+=" -X $module/$pkg.k8sVersionMajor=1 -X $module/$pkg.k8sVersionMinor=$k8s_minor"
done
# `go install module@version` builds helm with its own go.mod (no replaces to work around).
GOBIN="$work" go install -trimpath -ldflags="$ldflags" "$module/cmd/helm@$HELM_VERSION" >&2
mv "$work/helm" "$bin_dir/helm"
echo "built helm $HELM_VERSION in $(( $(date +%s) - started ))s" >&2
echo "$bin_dir"
