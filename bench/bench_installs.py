"""Installs never pay for each other (issue 10, item 7): fan-out throughput of an install on a
vhost where 20 other installs came and went, against a fresh one.

Each passing install starts an operator for a namespace of its own, runs a small fan-out, and
stops: the even ones are uninstalled (their Workflows deleted first, as docs/operating.md
says, then their operator is told of a Deployment of its own that does not exist, so on
stopping it finds itself removed and deletes its queues, the path a `helm uninstall` takes),
the odd ones vanish (stopped with everything left behind, as after a crash). Before events
were routed per install, every one of those queues kept a copy of every worker event of every
install; now they gain nothing.

Then the same fan-out in turns on that vhost and on a fresh one (the fresh broker to compare
with: a vhost nobody used, on the same RabbitMQ node, with an install of its own), the median
ratio (the aim: within 10%), what the vanished installs' queues hold, and RabbitMQ's resident
memory before and after.

    eval "$(make -s testbed-env)"; .venv/bin/python bench/bench_installs.py [--items 5000]
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from bench_operator import kubectl, one_run, start_operator, wait_ready
from conveyor import names
from conveyor.broker import Admin
from conveyor.broker.settings import BrokerSettings
from testbed import rabbitmq
from testbed.layout import paths, ports

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


def passing_install(index: int, log_dir: Path, items: int, amqp_url: str) -> str:
    """One install that comes, runs a fan-out, and goes; returns its events queue."""
    namespace = f"bench-pass-{index}-{uuid.uuid4().hex[:4]}"
    kubectl("create", "namespace", namespace)
    removed = index % 2 == 0
    env = {"CONVEYOR_LEADER_LEASE": f"pass-{index}", "POD_NAMESPACE": namespace,
           "CONVEYOR_AMQP_URL": amqp_url}
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


class Install:
    """An operator and its fan-out Workflow in a namespace of its own, on one vhost."""

    def __init__(self, name: str, amqp_url: str, log_dir: Path, replicas: int,
                 concurrency: int) -> None:
        self.namespace = f"bench-{name}-{uuid.uuid4().hex[:6]}"
        kubectl("create", "namespace", self.namespace)
        self.operator = start_operator(self.namespace, log_dir / f"{name}.log",
                                       CONVEYOR_LEADER_LEASE=name, CONVEYOR_AMQP_URL=amqp_url,
                                       POD_NAMESPACE=self.namespace)
        apply_workflow(self.namespace, replicas, concurrency)
        wait_ready(self.namespace, replicas)

    def fan_out(self, items: int) -> float:
        return one_run(self.namespace, items)[0]

    def remove(self) -> None:
        """As docs/operating.md says: the Workflows first, then the operator."""
        kubectl("-n", self.namespace, "delete", "cwr,cwf", "--all", "--wait=true",
                "--timeout=120s")
        stop(self.operator)
        kubectl("delete", "namespace", self.namespace, "--wait=false")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=5000)
    parser.add_argument("--replicas", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=32)
    # Five: with three, one noisy round on this 2-core machine moves the median 10%.
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--cycle-items", type=int, default=200)
    args = parser.parse_args()
    kubectl("apply", "-f", str(REPO / "crds"))
    log_dir = Path(tempfile.mkdtemp(prefix="bench-installs-"))
    tag = uuid.uuid4().hex[:6]
    used_vhost, fresh_vhost = f"bench-used-{tag}", f"bench-fresh-{tag}"
    used_url = rabbitmq.add_vhost(paths(), ports(), used_vhost)
    began = time.monotonic()
    installs: list[Install] = []
    try:
        used = Install("used", used_url, log_dir, args.replicas, args.concurrency)
        installs.append(used)
        rss_before = rabbitmq_rss_mib()
        before = [used.fan_out(args.items) for _ in range(args.rounds)]
        left: list[str] = []
        removed: list[str] = []
        for index in range(args.cycles):
            queue = passing_install(index, log_dir, args.cycle_items, used_url)
            (left if index % 2 else removed).append(queue)
            print(f"install {index + 1}/{args.cycles} came and went "
                  f"({'vanished' if index % 2 else 'uninstalled'})", flush=True)
        # The fresh broker to compare with: a vhost nobody used, on the same RabbitMQ node
        # (this machine runs one), measured in turns with the used one.
        fresh = Install("fresh", rabbitmq.add_vhost(paths(), ports(), fresh_vhost), log_dir,
                        args.replicas, args.concurrency)
        installs.append(fresh)
        after: list[tuple[float, float]] = []
        for round_ in range(args.rounds):
            pair = [0.0, 0.0]
            for which in ((0, 1) if round_ % 2 == 0 else (1, 0)):  # alternating order
                pair[which] = (used, fresh)[which].fan_out(args.items)
            after.append((pair[0], pair[1]))
        rss_after = rabbitmq_rss_mib()
        with Admin(BrokerSettings(used_url)) as admin:
            held = {queue: admin.inspect(queue) for queue in left}
            still_there = [queue for queue in removed if admin.inspect(queue) is not None]
    finally:
        for install in installs:
            install.remove()
        for vhost in (used_vhost, fresh_vhost):  # with whatever the vanished ones left
            rabbitmq.delete_vhost(paths(), ports(), vhost)

    counts = {q: (stats.backlog if stats else None) for q, stats in held.items()}
    ratio = report(args, before, after, counts, removed=len(removed),
                   still_there=len(still_there), rss=(rss_before, rss_after),
                   took=time.monotonic() - began, log_dir=log_dir)
    if ratio < AIM_RATIO or any(counts.values()) or still_there:
        raise SystemExit(1)


def report(args: argparse.Namespace, before: list[float], after: list[tuple[float, float]],
           counts: dict[str, int | None], *, removed: int, still_there: int,
           rss: tuple[float | None, float | None], took: float, log_dir: Path) -> float:
    """Print the table; returns the median ratio, used over fresh."""
    print(f"\nFan-out of {args.items} no-op items, {args.replicas} replicas x {args.concurrency}"
          f", on a vhost where {args.cycles} installs came and went ({args.cycle_items}-item "
          f"fan-out each; half uninstalled, half vanished), against a fresh vhost, in turns")
    print(f"{'round':>6} {'used tasks/s':>13} {'fresh tasks/s':>14} {'ratio':>7}")
    for i, (later, clean) in enumerate(after, 1):
        print(f"{i:>6} {later:>13.0f} {clean:>14.0f} {later / clean:>7.2f}")
    used_median = statistics.median(a for a, _ in after)
    fresh_median = statistics.median(b for _, b in after)
    ratio = used_median / fresh_median
    print(f"{'median':>6} {used_median:>13.0f} {fresh_median:>14.0f} {ratio:>7.2f}   "
          f"aim: >= {AIM_RATIO:.2f}")
    print(f"the used vhost before the installs came: {statistics.median(before):.0f} tasks/s "
          f"(median of {', '.join(f'{r:.0f}' for r in before)})")
    print(f"messages held by the {len(counts)} vanished installs' events queues: "
          f"{sum(c or 0 for c in counts.values())}")
    print(f"queues of the {removed} uninstalled installs still there: {still_there}")
    if rss[0] and rss[1]:
        print(f"RabbitMQ resident memory: {rss[0]:.0f} MiB before, {rss[1]:.0f} MiB after")
    print(f"took {took:.0f}s; operator logs in {log_dir}")
    return ratio


if __name__ == "__main__":
    main()
