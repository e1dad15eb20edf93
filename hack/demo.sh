#!/usr/bin/env bash
# `make demo`: the main job. With the test bed up (make runs `testbed-up` first), it installs
# Conveyor with its Helm chart, so the operator runs as a pod of the test bed under the chart's
# RBAC; applies the example order-fulfilment Workflow and a run of it; and follows the run live
# until it ends: worker pools scale up from zero, 20 items fan out, a flaky payment succeeds
# on its third attempt, a `when` skips the gift wrap, the `finally` audit runs. With the test
# bed's container node, the operator and the workers run from Conveyor's images.
# Idempotent: a second run upgrades the release in place and starts the run anew.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(PYTHONPATH=hack .venv/bin/python -m testbed env)"
helm_dir=$(hack/build-helm.sh)
export PATH="$PWD/.venv/bin:$helm_dir:$PATH"
release=conveyor
system=conveyor-system   # the operator's namespace
ns=conveyor-demo         # where the Workflow runs; the operator watches only it
state=$(PYTHONPATH=hack .venv/bin/python -c 'from testbed.layout import paths; print(paths().root)')

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
indent() { sed 's/^/   /'; }

# With the container node (a real kubelet, containerd and runc) the operator and the workers
# run from Conveyor's own images (make images: about 5 minutes the first time, cached after);
# without it, or with CONVEYOR_DEMO_PROCESSES=1, as local processes of the process node.
node_ready() {
  [ "$(kubectl get node "$1" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' \
       2>/dev/null)" = True ]
}
if [ -n "${CONVEYOR_CONTAINER_NODE:-}" ] && [ "${CONVEYOR_DEMO_PROCESSES:-0}" != 1 ] \
    && node_ready "$CONVEYOR_CONTAINER_NODE"; then
  mode=images
else
  mode=processes
fi

if [ "$mode" = images ]; then
  say "Building Conveyor's images (make images; cached after the first time)"
  hack/build-images.sh 2>&1 | tail -n 4 | indent
  PYTHONPATH=hack .venv/bin/python -m testbed images import "$(hack/build-images.sh --print-dir)"/conveyor-*.tar | indent
fi

say "Installing Conveyor with Helm: release $release in $system, watching $ns ($mode)"
for n in "$system" "$ns"; do
  kubectl get namespace "$n" >/dev/null 2>&1 || kubectl create namespace "$n" | indent
done
# The container node takes the pods of namespaces with these annotations (the API server's
# PodNodeSelector and PodTolerationRestriction); the process node those without.
annotations=$(PYTHONPATH=hack .venv/bin/python -c '
from testbed import containers
for key, value in containers.namespace_annotations().items(): print(f"{key}={value}")')
for n in "$system" "$ns"; do
  while IFS= read -r kv; do
    if [ "$mode" = images ]; then
      kubectl annotate --overwrite namespace "$n" "$kv" >/dev/null
    else
      kubectl annotate namespace "$n" "${kv%%=*}-" >/dev/null 2>&1 || true
    fi
  done <<< "$annotations"
done
# CRDs that `kubectl apply -f crds/` (or another release) created join this release.
for crd in workflows.conveyor.dev workflowruns.conveyor.dev; do
  owner=$(kubectl get crd "$crd" -o jsonpath='{.metadata.annotations.meta\.helm\.sh/release-name}' \
          2>/dev/null) || continue
  [ "$owner" = "$release" ] && continue
  kubectl annotate --overwrite crd "$crd" "meta.helm.sh/release-name=$release" \
    "meta.helm.sh/release-namespace=$system" >/dev/null
  kubectl label --overwrite crd "$crd" app.kubernetes.io/managed-by=Helm >/dev/null
  echo "   adopted the CRD $crd into the release"
done
# The broker URL goes to a values file, not the command line. From images: the broker as the
# container node's pods reach it. As processes: the operator's command instead of an image,
# and its health port on the pod's own loopback IP.
values="$state/demo-values.yaml"
umask 077
if [ "$mode" = images ]; then
  cat > "$values" <<VALUES
operator:
  namespaces: [$ns]
amqp:
  url: "$CONVEYOR_CONTAINER_AMQP_URL"
VALUES
else
  cat > "$values" <<VALUES
operator:
  command: [conveyor-operator]
  namespaces: [$ns]
health:
  listenOnPodIP: true
amqp:
  url: "$CONVEYOR_AMQP_URL"
VALUES
fi
helm upgrade --install "$release" charts/conveyor --namespace "$system" -f "$values" \
  --wait --timeout 3m | grep -E '^(Release|NAME|STATUS|REVISION)' | indent
kubectl -n "$system" get pods -o wide -l "app.kubernetes.io/instance=$release" | indent

say "Applying examples/order-fulfilment.yaml and a run of it"
kubectl -n "$ns" delete workflowrun order-42 --ignore-not-found --wait=true | indent
kubectl -n "$ns" apply -f examples/order-fulfilment.yaml -f examples/order-fulfilment-run.yaml \
  | indent

if conveyor watch --help >/dev/null 2>&1; then
  say "Following the run: conveyor watch -n $ns order-42"
  conveyor watch -n "$ns" order-42 || true
else
  say "Following the run (kubectl get cwr,deploy as it changes)"
  last=""
  for _ in $(seq 1 600); do
    phase=$(kubectl -n "$ns" get cwr order-42 -o jsonpath='{.status.phase}' 2>/dev/null || true)
    now=$(kubectl -n "$ns" get cwr order-42 --no-headers 2>/dev/null; \
          kubectl -n "$ns" get deploy --no-headers 2>/dev/null | awk '{print "   pool " $1 " " $2}')
    if [ "$now" != "$last" ]; then
      printf '%s  %s\n' "$(date +%T)" "$(echo "$now" | head -1)"
      echo "$now" | tail -n +2
      last=$now
    fi
    case "$phase" in Succeeded|Failed|Cancelled) break ;; esac
    sleep 0.5
  done
fi

phase=$(kubectl -n "$ns" get cwr order-42 -o jsonpath='{.status.phase}')
say "The run ended: $phase"
kubectl -n "$ns" get cwr order-42 -o jsonpath='{range .status.tasks[*]}   {.name}{"\t"}{.phase}{"\t"}attempts={.attempts}{"\n"}{end}'
echo "   outputs: $(kubectl -n "$ns" get cwr order-42 -o jsonpath='{.status.outputs}')"
pod=$(kubectl -n "$system" get pods -l "app.kubernetes.io/instance=$release" \
      -o jsonpath='{.items[0].metadata.name}')

next() { printf '   %-46s # %s\n' "$1" "$2"; }
printf '\n\033[1m== Where to look next\033[0m\n'
next 'eval "$(make -s testbed-env)"' "KUBECONFIG, CONVEYOR_AMQP_URL, kubectl on PATH"
next "kubectl -n $ns get cwf,cwr" "the printer columns"
if conveyor get --help >/dev/null 2>&1; then
  next "conveyor get -n $ns order-42" "the run, task by task (docs/cli.md)"
fi
next "kubectl -n $ns get events" "the run's Events: its start and end, each retry of the flaky payment"
next "kubectl -n $system get deploy,pods,roles" "the release's operator and its RBAC"
next "helm -n $system status $release" "the release (helm: $helm_dir)"
if [ "$mode" = images ]; then
  next "kubectl -n $system logs $pod" "the operator pod's output"
  next "kubectl -n $ns logs -l conveyor.dev/workflow=order-fulfilment" "the worker pods' output"
else
  echo "   the operator pod's output:  $state/pods/$system/$pod/operator.log"
  echo "   each worker pod's output:   $state/pods/$ns/"
fi
echo "   docs: docs/concepts.md, docs/operating.md, docs/troubleshooting.md"
echo "   The operator keeps running as a pod of the test bed; make testbed-down stops it all."
[ "$phase" = Succeeded ]
