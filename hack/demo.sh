#!/usr/bin/env bash
# `make demo`: the main job. Today it brings the test bed up and shows it working; once the
# operator lands (issues 5 and 6) it installs the chart, applies the example Workflow and a run,
# and watches the run to the end.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(PYTHONPATH=hack .venv/bin/python -m testbed env)"

echo
echo "== The test bed is up: a real Kubernetes control plane and RabbitMQ on loopback"
kubectl version 2>/dev/null | sed 's/^/   /'
kubectl get nodes -o wide | sed 's/^/   /'
echo
echo "== Conveyor itself is not built yet: the operator, workers and CLI say so honestly"
for cmd in conveyor-operator conveyor-worker conveyor; do
  "$cmd" 2>&1 | sed 's/^/   /' || true
done
cat <<'MSG'

== What `make demo` will do once the operator lands
   helm install the chart (the operator runs as a pod of the test bed), apply the example
   order-fulfilment Workflow and a WorkflowRun, and show `conveyor watch` until it succeeds.

Use the test bed now:   eval "$(make -s testbed-env)"; kubectl get nodes
Stop it:                make testbed-down
MSG
