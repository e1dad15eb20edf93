#!/usr/bin/env bash
# `make demo`: the main job. With the test bed up (make runs `testbed-up` first), it installs
# Conveyor's CRDs, starts the operator, applies the example order-fulfilment Workflow and a
# run of it, and follows the run live until it ends: worker pools scale up from zero, 20 items
# fan out, a flaky payment succeeds on its third attempt, a `when` skips the gift wrap, the
# `finally` audit runs.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(PYTHONPATH=hack .venv/bin/python -m testbed env)"
export PATH="$PWD/.venv/bin:$PATH"
ns=conveyor-demo
state=$(PYTHONPATH=hack .venv/bin/python -c 'from testbed.layout import paths; print(paths().root)')
log="$state/logs/demo-operator.log"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "Installing the CRDs and the namespace $ns"
kubectl apply -f crds/ | sed 's/^/   /'
kubectl wait --for=condition=Established --timeout=60s -f crds/ >/dev/null
kubectl get namespace "$ns" >/dev/null 2>&1 || kubectl create namespace "$ns" | sed 's/^/   /'
kubectl -n "$ns" delete workflowrun order-42 --ignore-not-found >/dev/null

say "Starting conveyor-operator (log: $log)"
conveyor-operator -n "$ns" --health-port 0 >>"$log" 2>&1 &
operator=$!
trap 'kill $operator 2>/dev/null; wait $operator 2>/dev/null || true' EXIT

say "Applying examples/order-fulfilment.yaml and a run of it"
kubectl -n "$ns" apply -f examples/order-fulfilment.yaml -f examples/order-fulfilment-run.yaml \
  | sed 's/^/   /'

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

say "The run ended: $phase"
kubectl -n "$ns" get cwr order-42 -o jsonpath='{range .status.tasks[*]}   {.name}{"\t"}{.phase}{"\t"}attempts={.attempts}{"\n"}{end}'
echo "   outputs: $(kubectl -n "$ns" get cwr order-42 -o jsonpath='{.status.outputs}')"
kubectl -n "$ns" wait --for=condition=Succeeded cwr/order-42 --timeout=5s >/dev/null

cat <<MSG

== Where to look next
   eval "\$(make -s testbed-env)"           # KUBECONFIG, CONVEYOR_AMQP_URL and kubectl on PATH
   kubectl -n $ns get cwf,cwr               # the printer columns
   kubectl -n $ns get cwr order-42 -o yaml  # the whole status
   kubectl -n $ns get events                # what the operator did, task by task
   ls $state/pods/$ns/                      # each worker pod's output
   The operator stopped with this demo; the test bed keeps running: make testbed-down
MSG
[ "$phase" = Succeeded ]
