#!/usr/bin/env bash
# Builds Conveyor's three images with buildah, with no daemon and no registry, and exports each
# as a docker-archive tar into ~/.cache/conveyor/images/ (what `ctr images import` and
# `docker load` read):
#
#   conveyor-operator.tar   conveyor-operator:<version>   operator/Dockerfile
#   conveyor-worker.tar     conveyor-worker:<version>     worker-image/Dockerfile
#   conveyor-examples.tar   conveyor-examples:<version>   examples/workers/Dockerfile
#
# <version> is pyproject.toml's. No public image can be pulled here, so the Dockerfiles'
# `BASE` is a local one, conveyor.local/debian-python:bookworm: Debian's python3 from
# debootstrap (minbase), trimmed, its rootfs tar cached and keyed by the suite, the package
# list and the recipe. An image is rebuilt only when its inputs change (its Dockerfile, the
# package's sources, the base, the recipe), so a warm run takes seconds; each (re)built image
# is verified (see --verify) before its tar replaces the old one.
#
#   hack/build-images.sh              build what changed, verify it, print the sizes
#   hack/build-images.sh --is-cached  exit 0 when every tar is up to date (builds nothing)
#   hack/build-images.sh --print-dir  print the folder of the tars
#   hack/build-images.sh --verify     run every image from its tar: uid 10001, read-only root
#   hack/build-images.sh --base       build (or find cached) the base image only
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
cache_root=${CONVEYOR_CACHE:-$HOME/.cache/conveyor}
images_dir="$cache_root/images"
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$repo/pyproject.toml" | head -n1)
[ -n "$version" ] || { echo "no version in $repo/pyproject.toml" >&2; exit 1; }

suite=bookworm
# python3-venv brings ensurepip (the wheels stage makes a venv with pip), ca-certificates the
# public CAs (as python:3.12-slim has them).
packages=python3,python3-venv,ca-certificates
mirror=${CONVEYOR_DEBIAN_MIRROR:-http://deb.debian.org/debian}
base_ref="conveyor.local/debian-python:$suite"
names=(conveyor-operator conveyor-worker conveyor-examples)

# Behind a TLS-inspecting proxy the wheels stage's pip needs the host's CA bundle: mounted
# over the build containers' bundle for the RUN steps only (it stays out of the images).
ca_file=${CONVEYOR_BUILD_CA_FILE:-${PIP_CERT:-${SSL_CERT_FILE:-}}}
ca_mount=()
[ -n "$ca_file" ] && [ -f "$ca_file" ] && ca_mount=(--volume "$ca_file:/etc/ssl/certs/ca-certificates.crt:ro")

buildah_dir="$cache_root/buildah"
B=(buildah --root "$buildah_dir/root" --runroot "$buildah_dir/run" --storage-driver vfs)

say() { echo "build-images: $*" >&2; }
sha() { sha256sum | cut -c1-16; }

# The base's root filesystem: minbase plus $packages, without apt's caches and lists, docs,
# man pages, locales and logs. Python's own __pycache__ stays: with a read-only root file
# system nothing can be compiled at run time, so the interpreter starts faster with it.
build_base_rootfs() {
  local rootfs=$1
  debootstrap --variant=minbase --include="$packages" "$suite" "$rootfs" "$mirror" >&2
  rm -rf "$rootfs"/var/cache/apt/* "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/* \
         "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
         "$rootfs"/usr/share/locale/* "$rootfs"/var/cache/debconf/*-old "$rootfs"/tmp/*
}

base_key=$( { echo "$suite $packages"; declare -f build_base_rootfs; } | sha)
base_tar="$images_dir/base/debian-python-$suite-$base_key.tar"
# The image around it: FROM scratch has no env; these are python:3.12-slim's.
base_dockerfile='FROM scratch
ADD rootfs.tar /
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8
CMD ["/usr/bin/python3"]'
base_image_key=$(echo "$base_key $base_dockerfile" | sha)

# What an image is made from: its Dockerfile, the files its context copies, its base.
image_key() {
  local name=$1
  case "$name" in
    conveyor-operator) { cat "$repo/operator/Dockerfile"; sources_hash; } ;;
    conveyor-worker) { cat "$repo/worker-image/Dockerfile"; sources_hash; } ;;
    conveyor-examples)
      { find "$repo/examples/workers" -type f ! -path '*/__pycache__/*' ! -path '*.egg-info/*' \
          -print0 | sort -z | xargs -0 sha256sum | sed "s#  $repo/#  #"; image_key conveyor-worker; } ;;
  esac | { cat; echo "$version $base_image_key"; declare -f build_image; } | sha
}

sources_hash() {
  (cd "$repo" && find pyproject.toml README.md operator -type f ! -path '*/__pycache__/*' \
     ! -path '*.egg-info/*' -print0 | sort -z | xargs -0 sha256sum)
}

up_to_date() {
  local name=$1
  [ -s "$images_dir/$name.tar" ] && [ "$(cat "$images_dir/$name.key" 2>/dev/null)" = "$(image_key "$name")" ]
}

# A build's tar until it passed its checks; per process, as checkouts share the folder.
tmp_tar() { echo "$images_dir/.$1.$$.tar"; }

has_image() { "${B[@]}" inspect --type image "$1" >/dev/null 2>&1; }

ensure_base() {
  if [ ! -s "$base_tar" ]; then
    command -v debootstrap >/dev/null || { echo "debootstrap is needed (hack/install-deps.sh)" >&2; exit 1; }
    local work started
    work=$(mktemp -d "$images_dir/base/rootfs.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    started=$(date +%s)
    say "Building the base rootfs: debootstrap $suite with $packages (about 2 minutes)"
    build_base_rootfs "$work/rootfs"
    tar --numeric-owner -C "$work/rootfs" -cf "$work/rootfs.tar" .
    rm -f "$images_dir"/base/debian-python-*.tar
    mv "$work/rootfs.tar" "$base_tar"
    rm -rf "$work"
    trap - EXIT
    say "Built the base rootfs in $(( $(date +%s) - started ))s: $(du -h "$base_tar" | cut -f1)"
  fi
  if [ -z "$("${B[@]}" images -q --filter "label=dev.conveyor.base-key=$base_image_key" "$base_ref" 2>/dev/null)" ]; then
    local ctx
    ctx=$(mktemp -d "$images_dir/base/context.XXXXXX")
    ln "$base_tar" "$ctx/rootfs.tar" 2>/dev/null || cp "$base_tar" "$ctx/rootfs.tar"
    echo "$base_dockerfile" > "$ctx/Dockerfile"
    "${B[@]}" bud --quiet --pull-never --isolation chroot --label "dev.conveyor.base-key=$base_image_key" \
      -t "$base_ref" "$ctx" >/dev/null
    rm -rf "$ctx"
    say "Imported the base as $base_ref"
  fi
}

build_image() {
  local name=$1 ref="$1:$version" started
  started=$(date +%s)
  case "$name" in
    conveyor-operator) "${B[@]}" bud --quiet --pull-never --isolation chroot "${ca_mount[@]}" --build-arg "BASE=$base_ref" \
                         -f "$repo/operator/Dockerfile" -t "$ref" "$repo" >/dev/null ;;
    conveyor-worker) "${B[@]}" bud --quiet --pull-never --isolation chroot "${ca_mount[@]}" --build-arg "BASE=$base_ref" \
                       -f "$repo/worker-image/Dockerfile" -t "$ref" "$repo" >/dev/null ;;
    conveyor-examples) "${B[@]}" bud --quiet --pull-never --isolation chroot \
                         --build-arg "BASE=conveyor-worker:$version" \
                         -f "$repo/examples/workers/Dockerfile" -t "$ref" "$repo/examples/workers" >/dev/null ;;
  esac
  rm -f "$(tmp_tar "$name")"
  "${B[@]}" push --quiet "$ref" "docker-archive:$(tmp_tar "$name"):$ref" >/dev/null
  say "Built $ref in $(( $(date +%s) - started ))s"
}

# Runs an image from its tar the way a kubelet would, as far as the image decides: the tar is
# unpacked once (skopeo to OCI, umoci to a bundle), then runc runs the image's entrypoint (or
# the given command) with the image's user and env, a read-only root file system, a tmpfs
# /tmp, no capabilities and no new privileges.
unpack_image() {
  local tar=$1 work=$2
  skopeo copy --quiet "docker-archive:$tar" "oci:$work/oci:img" >/dev/null
  umoci unpack --image "$work/oci:img" "$work/bundle" >/dev/null
  rm -rf "$work/oci"
  cp "$work/bundle/config.json" "$work/image-config.json"
}

# run_bundle WORK [-- ARGS...]: ARGS after the image's entrypoint; or a whole command line.
run_bundle() {
  local work=$1; shift
  python3 - "$work" "$@" <<'PY'
import json, sys
work, args = sys.argv[1], sys.argv[2:]
spec = json.load(open(f"{work}/image-config.json"))
proc = spec["process"]
if args and args[0] == "--":  # arguments to the entrypoint
    proc["args"] = json.load(open(f"{work}/entrypoint.json")) + args[1:]
elif args:
    proc["args"] = args
proc["terminal"] = False
proc["noNewPrivileges"] = True
proc["capabilities"] = {k: [] for k in ("bounding", "effective", "inheritable", "permitted", "ambient")}
spec["root"]["readonly"] = True
spec["mounts"].append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                       "options": ["nosuid", "nodev", "mode=1777"]})
json.dump(spec, open(f"{work}/bundle/config.json", "w"))
PY
  local id rc=0
  id="conveyor-verify-$$-$RANDOM"
  (cd "$work/bundle" && runc run "$id" </dev/null) || rc=$?
  runc delete --force "$id" >/dev/null 2>&1 || true
  return $rc
}

# In each image, as its user: uid 10001, the root file system read-only, the command works.
verify_image() {
  local name=$1 tar check out work
  tar=$(tmp_tar "$name")
  [ -s "$tar" ] || tar="$images_dir/$name.tar"
  work=$(mktemp -d "${TMPDIR:-/tmp}/conveyor-verify.XXXXXX")
  unpack_image "$tar" "$work"
  skopeo inspect --config "docker-archive:$tar" \
    | python3 -c 'import json, sys; print(json.dumps(json.load(sys.stdin)["config"].get("Entrypoint") or []))' \
    > "$work/entrypoint.json"
  check='import os, sys
assert os.getuid() == 10001, os.getuid()
try:
    open("/probe", "w")
except OSError as error:
    assert error.errno == 30, error
else:
    sys.exit("the root file system is writable")
open("/tmp/probe", "w").close()
'
  local rc=0
  case "$name" in
    conveyor-operator)
      out=$(run_bundle "$work" -- --help) && grep -q -- '--namespace' <<<"$out" || rc=1
      [ $rc -eq 0 ] || echo "$out" >&2
      [ $rc -ne 0 ] || run_bundle "$work" python -c "$check
import conveyor.operator, conveyor.cli, kopf, kubernetes, confluent_kafka" || rc=1 ;;
    conveyor-worker)
      out=$(run_bundle "$work" -- --help) && grep -q -- '--module' <<<"$out" || rc=1
      [ $rc -eq 0 ] || echo "$out" >&2
      [ $rc -ne 0 ] || run_bundle "$work" python -c "$check
import importlib.util, conveyor.worker
extra = [m for m in ('kopf', 'kubernetes', 'aiohttp') if importlib.util.find_spec(m)]
assert not extra, f'the worker image has {extra}'" || rc=1 ;;
    conveyor-examples)
      run_bundle "$work" python -c "$check
import conveyor.worker, shop_tasks" || rc=1 ;;
  esac
  rm -rf "$work"
  [ $rc -eq 0 ] || { echo "build-images: $name failed its checks" >&2; return 1; }
  say "Verified $name: uid 10001, read-only root, its command runs"
}

sizes() {
  printf '%-20s %-40s %8s\n' IMAGE REF SIZE
  for name in "${names[@]}"; do
    printf '%-20s %-40s %8s\n' "$name" "$name:$version" "$(du -h "$images_dir/$name.tar" | cut -f1)"
  done
  printf '%-20s %-40s %8s\n' "(base)" "$base_ref" "$(du -h "$base_tar" | cut -f1)"
}

case "${1:-}" in
  --print-dir) echo "$images_dir"; exit 0 ;;
  --is-cached)
    for name in "${names[@]}"; do up_to_date "$name" || exit 1; done
    exit 0 ;;
  --verify)
    for name in "${names[@]}"; do
      [ -s "$images_dir/$name.tar" ] || { echo "no $images_dir/$name.tar: run make images" >&2; exit 1; }
      verify_image "$name"
    done
    exit 0 ;;
  --base) ;;
  "") ;;
  *) echo "usage: $0 [--is-cached | --print-dir | --verify | --base]" >&2; exit 2 ;;
esac

for tool in buildah skopeo umoci runc; do
  command -v "$tool" >/dev/null || { echo "$tool is needed (hack/install-deps.sh)" >&2; exit 1; }
done
mkdir -p "$images_dir/base" "$buildah_dir"
if [ "${1:-}" = --base ]; then ensure_base; echo "$base_ref"; exit 0; fi
started=$(date +%s)
built=0
for name in "${names[@]}"; do
  up_to_date "$name" && continue
  ensure_base
  # The examples start from the worker image: when only they changed, load it from its tar.
  if [ "$name" = conveyor-examples ] && ! has_image "conveyor-worker:$version"; then
    "${B[@]}" pull --quiet "docker-archive:$images_dir/conveyor-worker.tar" >/dev/null
  fi
  build_image "$name"
  verify_image "$name"
  mv "$(tmp_tar "$name")" "$images_dir/$name.tar"
  image_key "$name" > "$images_dir/$name.key"
  built=$((built + 1))
done
if [ "$built" -gt 0 ]; then
  # Old builds of these tags, and intermediate stages, would fill the vfs storage.
  "${B[@]}" rmi --prune >/dev/null 2>&1 || true
fi
say "$built image(s) built in $(( $(date +%s) - started ))s, the rest up to date"
sizes
