#!/usr/bin/env bash
# Builds the test bed's object store (hack/s3server: rclone's gofakes3 behind a small main)
# through the Go module proxy into a cache folder keyed by the gofakes3 version and a hash of
# main.go, so an edit rebuilds and a warm cache returns at once. `--is-cached` only tells
# whether the cache is warm (exit status 0). Prints the path of the binary.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"

cache_root=${CONVEYOR_CACHE:-$HOME/.cache/conveyor}
src_hash=$(sha256sum "$here/s3server/main.go" | cut -c1-12)
bin="$cache_root/testbed/s3server-$GOFAKES3_VERSION-$src_hash/conveyor-s3"

if [ "${1:-}" = "--is-cached" ]; then
  [ -x "$bin" ]
  exit
fi
if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi

command -v go >/dev/null || { echo "Go is needed to build the test bed (go1.26 or newer)" >&2; exit 1; }
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOTOOLCHAIN=local
mkdir -p "$cache_root"
work=$(mktemp -d "$cache_root/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
started=$(date +%s)
cp "$here/s3server/main.go" "$work/"
cd "$work"
go mod init conveyor.dev/testbed/s3server >/dev/null 2>&1
go get "github.com/rclone/gofakes3@$GOFAKES3_VERSION" >&2
go mod tidy >&2
mkdir -p "$(dirname "$bin")"
go build -trimpath -ldflags='-s -w' -o "$bin.tmp" . >&2
mv "$bin.tmp" "$bin"
echo "built conveyor-s3 (gofakes3 $GOFAKES3_VERSION) in $(( $(date +%s) - started ))s" >&2
echo "$bin"
