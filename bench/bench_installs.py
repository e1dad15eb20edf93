"""Installs never pay for each other (issue 10, item 7): fan-out throughput of one install on a
fresh vhost, then again after 20 other installs came and went on the same broker.

Each passing install starts an operator for a namespace of its own, runs a small fan-out, and
stops: the even ones are uninstalled (their Workflows deleted first, as docs/operating.md
says, then their operator is told of a Deployment of its own that does not exist, so on
stopping it finds itself removed and deletes its queues, the path a `helm uninstall` takes),
the odd ones vanish (stopped with everything left behind, as after a crash). Before events
were routed per install, every one of those queues kept a copy of every worker event of every
install; now they gain nothing.

Prints the fan-out rounds before and after, the median ratio (the aim: within 10%), what the
vanished installs' queues hold, and RabbitMQ's resident memory before and after.

    eval "$(make -s testbed-env)"; .venv/bin/python bench/bench_installs.py [--items 5000]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench_operator import kubectl, one_run, wait_ready
from conveyor import names
from conveyor.broker import Admin
from conveyor.broker.settings import BrokerSettings
from testbed.layout import paths

REPO = Path(__file__).resolve().parents[1]
AIM_RATIO = 0.9


def rabbitmq_rss_mib() -> float | None:
    """Resident memory of this test bed's RabbitMQ (the Erlang VM running on its state
    directory, not another test bed's), if it can be found."""
    mnesia = str(paths().rabbitmq)
    total = 0.0
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
            if "beam" not in cmdline or mnesia not in cmdline:
                continue
            status = (proc / "status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) / 1024
    return total or None


def start_operator(namespace: str, log: Path, **env: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "conveyor.operator", "-n", namespace],
        env={**os.environ, "CONVEYOR_HEALTH_PORT": "0", **env},
        stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def apply_workflow(namespace: str, replicas: int, concurrency: int) -> None:
    kubectl("-n", namespace, "apply", "-f", "-", stdin=json.dumps({
        "apiVersion": "conveyor.dev/v1alpha1", "kind": "Workflow",
        "metadata": {"name": "bench"},
        "spec": {
            "taskTypes": [{
                "name": "noop", "image": "bench", "concurrency": concurrency,
                "command": ["conveyor-worker", "--module", "bench_tasks"],
                "env": [{"name": "PYTHONPATH", "value": str(REPO / "bench" / "workers")}],
                "scaling": {"minReplicas": replicas, "maxReplicas": replicas},
            }],
            "tasks": [{"name": "fan", "type": "noop", "forEach": "${{ inputs.items }}"}],
        }}))


def passing_install(index: int, log_dir: Path, items: int) -> str:
    """One install that comes, runs a fan-out, and goes; returns its events queue."""
    namespace = f"bench-pass-{index}-{uuid.uuid4().hex[:4]}"
    kubectl("create", "namespace", namespace)
    removed = index % 2 == 0
    env = {"CONVEYOR_LEADER_LEASE": f"pass-{index}", "POD_NAMESPACE": namespace}
    if removed:  # a Deployment of its own that is not there: it was uninstalled
        env["CONVEYOR_OPERATOR_DEPLOYMENT"] = "uninstalled-operator"
    operator = start_operator(namespace, log_dir / f"pass-{index}.log", **env)
    try:
        apply_workflow(namespace, 1, 16)
        wait_ready(namespace, 1)
        one_run(namespace, items)
        if removed:  # uninstalled as docs/operating.md says: the Workflows first
            kubectl("-n", namespace, "delete", "cwr,cwf", "--all", "--wait=true",
                    "--timeout=120s")
    finally:
        stop(operator)
        if not removed:  # its Workflow's finalizer would hold the namespace for ever
            kubectl("-n", namespace, "patch", "cwf", "bench", "--type=merge",
                    "-p", '{"metadata":{"finalizers":null}}')
        kubectl("delete", "namespace", namespace, "--wait=false")
    return names.operator_queue(f"{namespace}.pass-{index}", "events")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=5000)
    parser.add_argument("--replicas", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--cycle-items", type=int, default=200)
    args = parser.parse_args()
    amqp_url = os.environ["CONVEYOR_AMQP_URL"]
    kubectl("apply", "-f", str(REPO / "crds"))
    namespace = f"bench-main-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", namespace)
    log_dir = Path(tempfile.mkdtemp(prefix="bench-installs-"))
    operator = start_operator(namespace, log_dir / "main.log", CONVEYOR_LEADER_LEASE="main",
                              POD_NAMESPACE=namespace)
    began = time.monotonic()
    try:
        apply_workflow(namespace, args.replicas, args.concurrency)
        wait_ready(namespace, args.replicas)
        rss_before = rabbitmq_rss_mib()
        before = [one_run(namespace, args.items)[0] for _ in range(args.rounds)]
        left: list[str] = []
        removed: list[str] = []
        for index in range(args.cycles):
            queue = passing_install(index, log_dir, args.cycle_items)
            (left if index % 2 else removed).append(queue)
            print(f"install {index + 1}/{args.cycles} came and went "
                  f"({'vanished' if index % 2 else 'uninstalled'})", flush=True)
        after = [one_run(namespace, args.items)[0] for _ in range(args.rounds)]
        rss_after = rabbitmq_rss_mib()
        with Admin(BrokerSettings(amqp_url)) as admin:
            held = {queue: admin.inspect(queue) for queue in left}
            still_there = [queue for queue in removed if admin.inspect(queue) is not None]
            for queue in left:  # the bench cleans up what the vanished installs left
                admin.delete_queue(queue)
                admin.delete_queue(queue.removesuffix(".events") + ".triggers")
                admin.delete_queue(queue + ".dead")
    finally:
        stop(operator)
        kubectl("delete", "namespace", namespace, "--wait=false")

    print(f"\nFan-out of {args.items} no-op items, {args.replicas} replicas x {args.concurrency}"
          f", before and after {args.cycles} installs came and went ({args.cycle_items}-item "
          f"fan-out each; half uninstalled, half vanished)")
    print(f"{'round':>6} {'fresh tasks/s':>14} {'after tasks/s':>14} {'ratio':>7}")
    for i, (fresh, later) in enumerate(zip(before, after, strict=True), 1):
        print(f"{i:>6} {fresh:>14.0f} {later:>14.0f} {later / fresh:>7.2f}")
    ratio = statistics.median(after) / statistics.median(before)
    print(f"{'median':>6} {statistics.median(before):>14.0f} {statistics.median(after):>14.0f} "
          f"{ratio:>7.2f}   aim: >= {AIM_RATIO:.2f}")
    counts = {q: (s.backlog if s else None) for q, s in held.items()}
    print(f"messages held by the {len(left)} vanished installs' events queues: "
          f"{sum(c or 0 for c in counts.values())}")
    print(f"queues of the {len(removed)} uninstalled installs still there: {len(still_there)}")
    if rss_before and rss_after:
        print(f"RabbitMQ resident memory: {rss_before:.0f} MiB before, {rss_after:.0f} MiB after")
    print(f"took {time.monotonic() - began:.0f}s; operator logs in {log_dir}")
    if ratio < AIM_RATIO or any(counts.values()) or still_there:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
