#!/usr/bin/env bash
# `make kind-up` / `make kind-e2e`: Conveyor on a kind cluster (kind-config.yaml), for people
# with Docker and kind. Not exercised on the project's own machines, which have no Docker
# engine; the test bed (README, "The test bed") is what CI runs.
#
#   up   create the cluster (if missing); build the operator, worker, example and e2e worker
#        images with docker and `kind load` them; helm install the chart with its single-node
#        RabbitMQ on a NodePort
#   e2e  up, then the e2e tests against that cluster (CONVEYOR_TEST_USE_KUBECONFIG=1)
#
# Environment: KIND_CLUSTER (conveyor), IMAGE_TAG (dev), KIND (kind), DOCKER (docker).
set -euo pipefail
cd "$(dirname "$0")/.."
cluster=${KIND_CLUSTER:-conveyor}
tag=${IMAGE_TAG:-dev}
kind=${KIND:-kind}
docker=${DOCKER:-docker}
release=conveyor
ns=conveyor-system
helm="$(hack/build-helm.sh)/helm"
state=.kind
mkdir -p "$state"
export KUBECONFIG="$PWD/$state/kubeconfig"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
need() { command -v "$1" >/dev/null || { echo "kind.sh needs $1 on PATH" >&2; exit 1; }; }

up() {
  need "$kind"; need "$docker"; need kubectl
  if ! "$kind" get clusters | grep -qx "$cluster"; then
    say "Creating the kind cluster $cluster"
    "$kind" create cluster --name "$cluster" --config kind-config.yaml --kubeconfig "$KUBECONFIG"
  else
    "$kind" export kubeconfig --name "$cluster" --kubeconfig "$KUBECONFIG"
  fi

  say "Building the images (tag $tag)"
  "$docker" build -f operator/Dockerfile -t "conveyor-operator:$tag" .
  "$docker" build -f worker-image/Dockerfile -t "conveyor-worker:$tag" .
  "$docker" build -f examples/workers/Dockerfile --build-arg "BASE=conveyor-worker:$tag" \
    -t conveyor-examples:0.1.0 examples/workers
  # The e2e suite's workers (tests/e2e/workers) in site-packages, importable whatever
  # PYTHONPATH the tests give them.
  "$docker" build -t conveyor-e2e:dev -f - tests/e2e/workers <<DOCKERFILE
FROM conveyor-worker:$tag
USER root
COPY e2e_tasks.py /opt/conveyor/lib/python3.12/site-packages/
USER 10001
DOCKERFILE

  say "Loading them into kind"
  for image in "conveyor-operator:$tag" "conveyor-worker:$tag" conveyor-examples:0.1.0 \
               conveyor-e2e:dev; do
    "$kind" load docker-image --name "$cluster" "$image"
  done

  say "Installing the chart (release $release in $ns)"
  [ -s "$state/rabbitmq-password" ] || openssl rand -hex 16 > "$state/rabbitmq-password"
  "$helm" upgrade --install "$release" charts/conveyor --namespace "$ns" --create-namespace \
    --set image.repository=conveyor-operator --set "image.tag=$tag" \
    --set image.pullPolicy=Never \
    --set rabbitmq.enabled=true --set rabbitmq.persistence.enabled=false \
    --set "rabbitmq.password=$(cat "$state/rabbitmq-password")" \
    --set rabbitmq.service.type=NodePort --set rabbitmq.service.amqpNodePort=30672 \
    --wait --timeout 5m
  kubectl -n "$ns" rollout status "statefulset/$release-rabbitmq" --timeout=5m

  node_ip=$("$docker" inspect -f '{{.NetworkSettings.Networks.kind.IPAddress}}' \
            "$cluster-control-plane")
  echo "amqp://conveyor:$(cat "$state/rabbitmq-password")@$node_ip:30672/" > "$state/amqp-url"
  say "Ready"
  echo "   export KUBECONFIG=$KUBECONFIG"
  echo "   export CONVEYOR_AMQP_URL=\$(cat $state/amqp-url)"
}

e2e() {
  up
  say "Running the e2e tests against kind"
  CONVEYOR_TEST_USE_KUBECONFIG=1 CONVEYOR_AMQP_URL="$(cat "$state/amqp-url")" \
  CONVEYOR_TEST_OPERATOR_IMAGE="conveyor-operator:$tag" \
    .venv/bin/python -m pytest tests/e2e ${PYTEST_ARGS:-}
}

case "${1:-}" in
  up) up ;;
  e2e) e2e ;;
  *) echo "usage: hack/kind.sh up|e2e" >&2; exit 2 ;;
esac
