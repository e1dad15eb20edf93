"""End-to-end throughput of the operator on the test bed: one WorkflowRun with a `forEach` of
N no-op items on a pool of R worker replicas, through the real API server, RabbitMQ, operator
and worker processes.

Prints tasks per second (from the run's startedAt to its finishedAt) and API-server writes per
task (WorkflowRun writes counted by the API server's own metrics), against the aims of issue 5:
at least 1,000 tasks/s and at most 0.2 writes per task.

    eval "$(make -s testbed-env)"; .venv/bin/python bench/bench_operator.py [--items 5000]
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from benchlib import REPO, apiserver_writes, kubectl, start_operator, wait_ready, when

AIM_TASKS_PER_SECOND = 1000.0
AIM_WRITES_PER_TASK = 0.2


def one_run(namespace: str, items: int) -> tuple[float, float, float]:
    name = f"bench-{uuid.uuid4().hex[:6]}"
    before = apiserver_writes("workflowruns")
    kubectl("-n", namespace, "apply", "-f", "-", stdin=json.dumps({
        "apiVersion": "conveyor.dev/v1alpha1", "kind": "WorkflowRun",
        "metadata": {"name": name},
        "spec": {"workflowRef": {"name": "bench"}, "inputs": {"items": list(range(items))}}}))
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        status = json.loads(kubectl("-n", namespace, "get", "cwr", name, "-o", "json")).get(
            "status") or {}
        if status.get("phase") in ("Succeeded", "Failed", "Cancelled"):
            break
        time.sleep(0.5)  # a benchmark's poll, not a test's wait
    else:
        raise SystemExit(f"run {name} did not finish in 600s")
    if status["phase"] != "Succeeded":
        raise SystemExit(f"run {name} ended {status['phase']}: {status.get('message')}")
    writes = apiserver_writes("workflowruns") - before - 1  # minus the run's own creation
    seconds = when(status["finishedAt"]) - when(status["startedAt"])
    return items / seconds, writes / items, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=5000)
    parser.add_argument("--replicas", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    namespace = f"bench-{uuid.uuid4().hex[:6]}"
    kubectl("apply", "-f", str(REPO / "crds"))
    kubectl("create", "namespace", namespace)
    log = Path(tempfile.mkdtemp()) / "operator.log"
    operator = start_operator(namespace, log, CONVEYOR_LEADER_LEASE="none")
    try:
        kubectl("-n", namespace, "apply", "-f", "-", stdin=json.dumps({
            "apiVersion": "conveyor.dev/v1alpha1", "kind": "Workflow",
            "metadata": {"name": "bench"},
            "spec": {
                "taskTypes": [{
                    "name": "noop", "image": "bench", "concurrency": args.concurrency,
                    "command": ["conveyor-worker", "--module", "bench_tasks"],
                    "env": [{"name": "PYTHONPATH", "value": str(REPO / "bench" / "workers")}],
                    "scaling": {"minReplicas": args.replicas, "maxReplicas": args.replicas},
                }],
                "tasks": [{"name": "fan", "type": "noop", "forEach": "${{ inputs.items }}"}],
            }}))
        wait_ready(namespace, args.replicas)
        results = [one_run(namespace, args.items) for _ in range(args.runs)]
        rates = [r[0] for r in results]
        writes = [r[1] for r in results]
        print(f"\nOperator end to end: forEach of {args.items} no-op items, {args.replicas} "
              f"worker replicas x concurrency {args.concurrency}, {args.runs} runs")
        print(f"{'run':>4} {'seconds':>9} {'tasks/s':>9} {'writes/task':>12}")
        for i, (rate, per_task, seconds) in enumerate(results, 1):
            print(f"{i:>4} {seconds:>9.2f} {rate:>9.0f} {per_task:>12.4f}")
        rate, per_task = statistics.median(rates), statistics.median(writes)
        print(f"{'median':>14} {rate:>9.0f} {per_task:>12.4f}")
        print(f"aim: >= {AIM_TASKS_PER_SECOND:.0f} tasks/s "
              f"(ratio {rate / AIM_TASKS_PER_SECOND:.2f}), <= {AIM_WRITES_PER_TASK} "
              f"writes/task (ratio {per_task / AIM_WRITES_PER_TASK:.3f})")
    finally:
        operator.send_signal(signal.SIGTERM)
        operator.wait(timeout=30)
        kubectl("delete", "namespace", namespace, "--wait=false")


if __name__ == "__main__":
    main()
