#!/usr/bin/env bash
# Installs the Debian packages the test bed and the tests need, when they are missing.
set -euo pipefail
missing=()
[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || missing+=(rabbitmq-server)
# The Argo CD health checks (docs/argocd/*.lua) are tested with Debian's Lua.
command -v lua5.4 >/dev/null || missing+=(lua5.4)
# The test bed's Kafka: Kafka 4 runs on Java 17 or newer; Maven fetches its jars.
java_major=$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')
[ "${java_major:-0}" -ge 17 ] 2>/dev/null || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || missing+=(maven)
# The images (hack/build-images.sh): buildah builds them, debootstrap makes their base, skopeo
# and umoci unpack them and runc runs them for the checks; containerd, runc, the CNI plugins
# and a static busybox are the test bed's container runtime.
for pkg in buildah debootstrap skopeo umoci runc containerd containernetworking-plugins \
           busybox-static; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "Installing ${missing[*]} with apt-get" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
# Debian's package starts a system-wide node where systemd runs; the test bed runs its own.
if command -v systemctl >/dev/null && systemctl is-active --quiet rabbitmq-server 2>/dev/null; then
  $sudo systemctl disable --now rabbitmq-server || true
fi
