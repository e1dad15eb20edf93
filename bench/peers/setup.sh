#!/usr/bin/env bash
# The peer benchmark's own set-up (bench/bench_peers.py calls it): Debian's redis-server for
# Celery's result backend, and a virtualenv of its own with Celery, apart from the product's
# dependencies. Cached: fast when warm. Prints the peers venv's python on its last line.
set -euo pipefail

CELERY_VERSION="${CELERY_VERSION:-5.7.0}"
VENV="${CONVEYOR_BENCH_PEERS_VENV:-${CONVEYOR_CACHE:-$HOME/.cache/conveyor}/bench-peers-venv}"

if ! command -v redis-server >/dev/null 2>&1 && [ ! -x /usr/bin/redis-server ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "bench peers: installing redis-server (apt)" >&2
  if ! $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null 2>&1; then
    $sudo apt-get update -qq >/dev/null
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  fi
  # Debian starts the packaged service; the bench runs its own on a free port.
  $sudo systemctl disable --now redis-server >/dev/null 2>&1 || true
fi

stamp="$VENV/.celery-$CELERY_VERSION"
if [ ! -f "$stamp" ]; then
  echo "bench peers: making $VENV with celery[redis]==$CELERY_VERSION" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip >&2
  "$VENV/bin/python" -m pip install --quiet "celery[redis]==$CELERY_VERSION" >&2
  touch "$stamp"
fi
echo "$VENV/bin/python"
