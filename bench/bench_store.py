"""Data at scale through the object store (issue 11): one task returns N items (stored by its
worker), a `forEach` over them, and a fan-in that reads every item's outputs, end to end on
the test bed (API server, RabbitMQ, the S3 server, operator and worker processes).

Two variants, in alternating rounds: items that return about 100 bytes each (aggregated by
the operator into chunks in the store, read back whole by the fan-in) and items that return
nothing. Prints items per second (the forEach task's startedAt to finishedAt, and the whole
run's), stored bytes per item (every object under the run's prefix), the largest the
WorkflowRun got, and the operator's peak RSS; medians and the per-round ratio of the two.

    eval "$(make -s testbed-env)"; .venv/bin/python bench/bench_store.py [--items 100000]
"""

from __future__ import annotations

import argparse
import json
import secrets
import signal
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from benchlib import kubectl, start_operator, when
from conveyor.store import ObjectStore, StoreSettings
from conveyor.store.values import run_prefix
from testbed import objectstore
from testbed.layout import paths, ports
from testbed.sizes import LargestObject

REPO = Path(__file__).resolve().parents[1]
WORKERS = REPO / "tests" / "e2e" / "workers"  # the e2e worker module's `data` task type
VARIANTS = {"with item outputs": "item", "without item outputs": "noop"}


def workflow(items: int, op: str, replicas: int, concurrency: int) -> dict[str, Any]:
    return {
        "apiVersion": "conveyor.dev/v1alpha1", "kind": "Workflow",
        "metadata": {"name": f"store-{op}"},
        "spec": {
            "taskTypes": [{
                "name": "data", "image": "bench", "concurrency": concurrency,
                "command": ["conveyor-worker", "--module", "e2e_tasks"],
                "env": [{"name": "PYTHONPATH", "value": str(WORKERS)}],
                "scaling": {"minReplicas": replicas, "maxReplicas": replicas},
            }],
            "tasks": [
                {"name": "gen", "type": "data", "inputs": {"op": "gen", "n": items}},
                {"name": "work", "type": "data", "dependsOn": ["gen"],
                 "forEach": "${{ tasks.gen.outputs.items }}",
                 "inputs": {"op": op, "item": "${{ item }}"}},
                {"name": "total", "type": "data", "dependsOn": ["work"],
                 "inputs": {"op": "count", "values": "${{ tasks.work.outputs }}"}},
            ],
        }}


def one_run(namespace: str, op: str, items: int, store: ObjectStore) -> dict[str, float]:
    name = f"{op}-{uuid.uuid4().hex[:6]}"
    with LargestObject(["-n", namespace, "get", "cwr", name]) as largest:
        kubectl("-n", namespace, "apply", "-f", "-", stdin=json.dumps({
            "apiVersion": "conveyor.dev/v1alpha1", "kind": "WorkflowRun",
            "metadata": {"name": name}, "spec": {"workflowRef": {"name": f"store-{op}"}}}))
        deadline = time.monotonic() + 1200
        while time.monotonic() < deadline:
            body = json.loads(kubectl("-n", namespace, "get", "cwr", name, "-o", "json"))
            status = body.get("status") or {}
            if status.get("phase") in ("Succeeded", "Failed", "Cancelled"):
                break
            time.sleep(1)  # a benchmark's poll, not a test's wait
        else:
            raise SystemExit(f"run {name} did not finish in 1200s")
    if status["phase"] != "Succeeded":
        raise SystemExit(f"run {name} ended {status['phase']}: {status.get('message')}")
    tasks = {t["name"]: t for t in status["tasks"]}
    work = tasks["work"]
    if tasks["total"]["outputs"].get("count") != items:
        raise SystemExit(f"run {name}: the fan-in counted {tasks['total']['outputs']}")
    meta = body["metadata"]
    stored = store.list(run_prefix(meta["namespace"], f"store-{op}", meta["uid"]))
    item_bytes = sum(size for key, size in stored if "/work/" in key)
    return {
        "fan_out": items / (when(work["finishedAt"]) - when(work["startedAt"])),
        "run": items / (when(status["finishedAt"]) - when(status["startedAt"])),
        "bytes_per_item": sum(size for _, size in stored) / items,
        "item_bytes_per_item": item_bytes / items,
        "objects": len(stored),
        "largest": largest.largest,
    }


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    bucket = f"bench-{secrets.token_hex(4)}"
    s3 = objectstore.client(paths(), ports())
    s3.create_bucket(Bucket=bucket)
    env_store = {**objectstore.env_vars(paths(), ports()), "CONVEYOR_S3_BUCKET": bucket}
    namespace = f"bench-{uuid.uuid4().hex[:6]}"
    kubectl("apply", "-f", str(REPO / "crds"))
    kubectl("create", "namespace", namespace)
    log = Path(tempfile.mkdtemp()) / "operator.log"
    operator = start_operator(namespace, log, CONVEYOR_LEADER_LEASE="none", **env_store)
    results: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
    try:
        with ObjectStore(StoreSettings.from_env(env_store)) as store:
            for op in VARIANTS.values():
                kubectl("-n", namespace, "apply", "-f", "-", stdin=json.dumps(
                    workflow(args.items, op, args.replicas, args.concurrency)))
            for _ in range(args.rounds):  # alternating, so drift hits both alike
                for variant, op in VARIANTS.items():
                    results[variant].append(one_run(namespace, op, args.items, store))
                    print(f"  {variant}: {results[variant][-1]}", flush=True)
        peak = peak_rss_mib(operator.pid)
    finally:
        operator.send_signal(signal.SIGTERM)
        operator.wait(timeout=30)
        kubectl("delete", "namespace", namespace, "--wait=false")
    print(f"\nStored data at scale: gen -> forEach of {args.items} items -> fan-in reading "
          f"every item's outputs; {args.replicas} worker replicas x {args.concurrency}, "
          f"{args.rounds} alternating rounds")
    print(f"{'variant':<22} {'round':>5} {'fan-out items/s':>16} {'run items/s':>12} "
          f"{'stored B/item':>14} {'objects':>8} {'largest run':>12}")
    for variant, rounds in results.items():
        for i, r in enumerate(rounds, 1):
            print(f"{variant:<22} {i:>5} {r['fan_out']:>16.0f} {r['run']:>12.0f} "
                  f"{r['bytes_per_item']:>14.1f} {r['objects']:>8.0f} {r['largest']:>12.0f}")
        med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
        print(f"{variant:<22} {'med':>5} {med['fan_out']:>16.0f} {med['run']:>12.0f} "
              f"{med['bytes_per_item']:>14.1f} {med['objects']:>8.0f} {med['largest']:>12.0f}")
    with_, without = results["with item outputs"], results["without item outputs"]
    ratios = [a["fan_out"] / b["fan_out"] for a, b in zip(with_, without, strict=True)]
    print(f"fan-out throughput with / without item outputs, per round: "
          f"{', '.join(f'{r:.2f}' for r in ratios)}; median {statistics.median(ratios):.2f}")
    print(f"item outputs stored per item (median): "
          f"{statistics.median(r['item_bytes_per_item'] for r in with_):.1f} B with, "
          f"{statistics.median(r['item_bytes_per_item'] for r in without):.1f} B without")
    print(f"operator peak RSS over all {2 * args.rounds} runs: {peak:.0f} MiB")


if __name__ == "__main__":
    main()
