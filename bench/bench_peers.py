"""Conveyor and Celery side by side (issue 12), in one invocation on the test bed's RabbitMQ.

Celery 5.7 (prefork, -c 4, a redis result backend) against Conveyor's operator with 4 worker
replicas x concurrency 32, on the same RabbitMQ node (Celery on a vhost of its own), the same
no-op task on both sides, in alternating rounds (the side that goes first changes every
round and every workload), so drift and the neighbours' load hit both alike. Workloads:

fanout        a forEach of 5,000 no-ops / a Celery group of 5,000, every result collected
              (tasks/s, from the create or the first send to the run's finishedAt or the
              last result)
chain         a chain of 100 no-op steps / a Celery chain of 100 (ms/step of the whole)
runs          300 WorkflowRuns of a 3-step chain (a -> b -> c) created at once by 8
              concurrent API clients (threads, a connection each: what a program that
              starts runs does; `--creators kubectl`: 8 concurrent `kubectl create -f` of a
              batch each, whose own start-up bounds the rate) / 300 Celery chains of 3 sent
              at once (runs/s: N over the first create to the last finishedAt)
events        300 events published (confirmed, distinct message ids) to a trigger of that
              Workflow on `conveyor.events` -> 300 runs Succeeded / Celery: 300 chains of 3
              (the same work without a trigger: Celery has none)
events-large  the same with 1,000 events

Printed: a table of medians with the per-round ratios (Conveyor over Celery in the row's unit,
median [min-max], said as faster or slower) against the aims of the issue, the per-round
figures, and what Conveyor spent per run on the run workloads: API-server writes by resource
(WorkflowRun create, status, other; Events) from the API server's own `apiserver_request_total`,
and the operator process's CPU seconds (utime + stime of /proc/<pid>/stat). The machine is
small and shared: the figures are noisy; the medians and ratios of alternating rounds are
what to read.

Set-up is the bench's own (bench/peers/setup.sh, cached): Debian's redis-server, and a
virtualenv with Celery in ~/.cache/conveyor/bench-peers-venv; neither is a product
dependency. Celery's side runs there (bench/peers/celery_driver.py, one JSON line per
workload). Everything started here is stopped at the end: the operator, the Workflows' worker
Deployments, the Celery worker, redis-server, Celery's vhost. Exit 0 whether aims are met or
not (a measurement), non-zero on an error (a run that failed, a wait that timed out).

    eval "$(make -s testbed-env)"; PYTHONPATH=hack .venv/bin/python bench/bench_peers.py \
        [--rounds 3] [--quick] [--only fanout,chain,runs,events,events-large]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from benchlib import REPO, apiserver_requests, kubectl, start_operator, wait_ready, when
from conveyor import names
from conveyor.broker import Link
from conveyor.broker.settings import BrokerSettings
from conveyor.children import deployment_name
from conveyor.kube.cli import load_cli_client
from peers import report
from testbed import rabbitmq
from testbed.layout import paths, ports

PEERS = REPO / "bench" / "peers"
WORKERS = REPO / "bench" / "workers"
TERMINAL = ("Succeeded", "Failed", "Cancelled")
CREATORS = 8
CREATOR_WORDS = {"client": "API clients", "kubectl": "kubectl create"}
TOPIC = "bench.small"
WORKLOADS = ("fanout", "chain", "runs", "events", "events-large")


class BenchError(Exception):
    """Something went wrong (not a missed aim): the bench exits non-zero."""


@dataclass(frozen=True)
class Sizes:
    fanout: int
    chain: int
    runs: int
    events: int
    events_large: int


FULL = Sizes(fanout=5000, chain=100, runs=300, events=300, events_large=1000)
QUICK = Sizes(fanout=500, chain=20, runs=50, events=50, events_large=100)


# -- Celery's side ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, check: Callable[[], bool], timeout: float,
             interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise BenchError(f"{what}: not within {timeout:.0f}s")
        time.sleep(interval)  # a benchmark's poll, bounded by the deadline


def redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def stop_process(proc: subprocess.Popen[bytes], grace: float = 30) -> None:
    """SIGTERM to the process group `proc` leads (its own session), SIGKILL after `grace`."""
    if proc.poll() is not None:
        return
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


class CeleryPeer:
    """redis-server, a Celery worker (prefork -c 4) on a vhost of its own, and the driver."""

    def __init__(self, stack: ExitStack, tmp: Path, concurrency: int) -> None:
        setup = subprocess.run([str(PEERS / "setup.sh")], capture_output=True, text=True,
                               check=False, timeout=900)
        if setup.returncode != 0:
            raise BenchError(f"bench/peers/setup.sh failed: {setup.stderr.strip()}")
        if setup.stderr.strip():
            print(setup.stderr.strip(), flush=True)
        self.python = setup.stdout.strip().splitlines()[-1]
        self.tmp = tmp
        port = free_port()
        (tmp / "redis").mkdir()
        redis = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(tmp / "redis"),
             "--logfile", str(tmp / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
        stack.callback(stop_process, redis)
        wait_for("redis-server answering", lambda: redis_answers(port), 30)
        vhost = f"bench-peers-{secrets.token_hex(3)}"
        broker = rabbitmq.add_vhost(paths(), ports(), vhost)
        stack.callback(rabbitmq.delete_vhost, paths(), ports(), vhost)
        self.env = {**os.environ, "PEERS_BROKER_URL": broker,
                    "PEERS_RESULT_BACKEND": f"redis://127.0.0.1:{port}/0",
                    "PEERS_QUEUE": "peers", "PYTHONPATH": str(PEERS)}
        self.env.pop("VIRTUAL_ENV", None)
        log = tmp / "celery-worker.log"
        worker = subprocess.Popen(
            [self.python, "-m", "celery", "-A", "celery_tasks", "worker", "--pool", "prefork",
             "-c", str(concurrency), "--loglevel", "WARNING", "-n", f"{vhost}@%h",
             "--without-gossip", "--without-mingle"],
            cwd=PEERS, env=self.env, stdout=log.open("ab"), stderr=subprocess.STDOUT,
            start_new_session=True)
        stack.callback(stop_process, worker)
        self.worker = worker
        self.drive("ping", timeout=60)

    def drive(self, workload: str, n: int = 0, timeout: float = 600) -> dict[str, Any]:
        if self.worker.poll() is not None:
            raise BenchError(f"the Celery worker exited; see {self.tmp / 'celery-worker.log'}")
        try:
            done = subprocess.run(
                [self.python, str(PEERS / "celery_driver.py"), workload, str(n),
                 "--timeout", str(timeout)],
                cwd=PEERS, env=self.env, capture_output=True, text=True, check=False,
                timeout=timeout + 60)
        except subprocess.TimeoutExpired as error:
            raise BenchError(f"Celery {workload} {n}: no answer in {timeout + 60:.0f}s") \
                from error
        if done.returncode != 0:
            raise BenchError(f"Celery {workload} {n} failed: {done.stderr.strip()[-2000:]}")
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return result

    def measure(self, key: str, sizes: Sizes) -> float:
        """Celery's figure of a workload, in the row's unit."""
        if key == "fanout":
            out = self.drive("fanout", sizes.fanout)
            return sizes.fanout / float(out["seconds"])
        if key == "chain":
            out = self.drive("chain", sizes.chain)
            return float(out["seconds"]) * 1000 / sizes.chain
        n = {"runs": sizes.runs, "events": sizes.events, "events-large": sizes.events_large}[key]
        out = self.drive("chains", n)
        return n / float(out["seconds"])


# -- Conveyor's side -------------------------------------------------------------------------


class RunWatch:
    """The namespace's WorkflowRuns as a watch sees them: name -> the object's metadata and
    status, kept by a thread of its own (listed again whenever the watch ends)."""

    def __init__(self, custom: client.CustomObjectsApi, namespace: str) -> None:
        self._custom = custom
        self._namespace = namespace
        self._runs: dict[str, dict[str, Any]] = {}
        self._changed = threading.Condition()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="run-watch", daemon=True)
        self._synced = threading.Event()
        self._thread.start()
        if not self._synced.wait(60):
            raise BenchError("the WorkflowRun watch never listed the namespace")

    def stop(self) -> None:
        self._stopping.set()

    def _list(self) -> str:
        listing = self._custom.list_namespaced_custom_object(
            names.GROUP, names.VERSION, self._namespace, names.RUN_PLURAL)
        with self._changed:
            self._runs = {o["metadata"]["name"]: o for o in listing.get("items", [])}
            self._changed.notify_all()
        self._synced.set()
        return str(listing["metadata"]["resourceVersion"])

    def _loop(self) -> None:
        version: str | None = None
        while not self._stopping.is_set():
            try:
                if version is None:
                    version = self._list()
                stream = watch.Watch()
                for event in stream.stream(
                        self._custom.list_namespaced_custom_object, names.GROUP,
                        names.VERSION, self._namespace, names.RUN_PLURAL,
                        resource_version=version, timeout_seconds=20):
                    if self._stopping.is_set():
                        stream.stop()
                        break
                    body = event["object"]
                    if event["type"] == "ERROR" or not isinstance(body, dict):
                        version = None  # expired: list again
                        break
                    name = body["metadata"]["name"]
                    version = body["metadata"].get("resourceVersion", version)
                    with self._changed:
                        if event["type"] == "DELETED":
                            self._runs.pop(name, None)
                        else:
                            self._runs[name] = body
                        self._changed.notify_all()
            except ApiException as error:
                version = None
                if error.status != 410:
                    time.sleep(0.5)
            except Exception:  # a dropped connection: list and watch again
                version = None
                time.sleep(0.5)

    def wait(self, what: str, done: Callable[[dict[str, dict[str, Any]]], bool],
             timeout: float) -> dict[str, dict[str, Any]]:
        """Wait until `done(runs)`; a run that ended other than Succeeded is an error."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for name, body in self._runs.items():
                    status = body.get("status") or {}
                    if status.get("phase") in ("Failed", "Cancelled"):
                        raise BenchError(f"run {name} ended {status['phase']}: "
                                         f"{status.get('message')}")
                if done(self._runs):
                    return dict(self._runs)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise BenchError(f"{what}: not within {timeout:.0f}s "
                                     f"({len(self._runs)} runs, {finished(self._runs)} done)")
                self._changed.wait(min(remaining, 1.0))


def finished(runs: dict[str, dict[str, Any]]) -> int:
    return sum((b.get("status") or {}).get("phase") in TERMINAL for b in runs.values())


def task_type(replicas: int, concurrency: int) -> dict[str, Any]:
    return {
        "name": "noop", "image": "bench", "concurrency": concurrency,
        "command": ["conveyor-worker", "--module", "bench_tasks"],
        "env": [{"name": "PYTHONPATH", "value": str(WORKERS)}],
        "scaling": {"minReplicas": replicas, "maxReplicas": replicas},
    }


def workflows(sizes: Sizes, replicas: int, concurrency: int) -> list[dict[str, Any]]:
    pool = [task_type(replicas, concurrency)]

    def workflow(name: str, tasks: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
        return {"apiVersion": names.API_VERSION, "kind": "Workflow",
                "metadata": {"name": name},
                "spec": {"taskTypes": pool, "tasks": tasks, **spec}}

    steps = [{"name": f"s{i}", "type": "noop", **({"dependsOn": [f"s{i - 1}"]} if i else {})}
             for i in range(sizes.chain)]
    return [
        workflow("peers-fan", [{"name": "fan", "type": "noop",
                                "forEach": "${{ inputs.items }}"}]),
        workflow("peers-chain", steps),
        workflow("peers-small", [{"name": "a", "type": "noop"},
                                 {"name": "b", "type": "noop", "dependsOn": ["a"]},
                                 {"name": "c", "type": "noop", "dependsOn": ["b"]}],
                 triggers=[{"event": TOPIC}]),
    ]


def run_body(workflow: str, name: str, inputs: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"apiVersion": names.API_VERSION, "kind": names.RUN_KIND,
            "metadata": {"name": name},
            "spec": {"workflowRef": {"name": workflow}, "inputs": inputs or {}}}


@dataclass
class Spent:
    """What Conveyor spent on one workload round."""

    runs: int
    writes: dict[str, float]
    cpu: float
    latencies: list[float]
    sending: float
    """Seconds from the first create (or publish) to the last one answered."""

    def per_run(self) -> dict[str, float]:
        return {k: v / self.runs for k, v in self.writes.items()}


class ConveyorSide:
    """An operator for a namespace of the bench's own, its three Workflows' pools kept warm."""

    def __init__(self, stack: ExitStack, tmp: Path, sizes: Sizes, replicas: int,
                 concurrency: int, *, operator_env: dict[str, str],
                 creators: str = "client") -> None:
        self.sizes = sizes
        self.creators = creators
        self.namespace = f"bench-peers-{secrets.token_hex(3)}"
        self.ticks = float(os.sysconf("SC_CLK_TCK"))
        self.spent: dict[str, list[Spent]] = {}
        self._serial = 0
        kubectl("apply", "-f", str(REPO / "crds"))
        kubectl("create", "namespace", self.namespace)
        stack.callback(kubectl, "delete", "namespace", self.namespace, "--wait=false")
        api, _ = load_cli_client(os.environ["KUBECONFIG"])
        self.custom = client.CustomObjectsApi(api)
        self.log = tmp / "operator.log"
        self.operator = start_operator(self.namespace, self.log,
                                       **{"CONVEYOR_LEADER_LEASE": "none", **operator_env})
        stack.callback(self._stop_operator)
        self.watch = RunWatch(self.custom, self.namespace)
        stack.callback(self.watch.stop)
        stack.callback(self._remove_workflows)  # before those: while the operator still acts
        self.link = Link(BrokerSettings.from_env(name="conveyor-bench-peers"),
                         name="bench-peers").start()
        stack.callback(self.link.close)
        if not self.link.wait_connected(30):
            raise BenchError("no AMQP connection to the test bed's RabbitMQ")
        kubectl("-n", self.namespace, "apply", "-f", "-", stdin=json.dumps(
            {"apiVersion": "v1", "kind": "List",
             "items": workflows(sizes, replicas, concurrency)}))
        for workflow in ("peers-fan", "peers-chain", "peers-small"):
            wait_ready(self.namespace, replicas, deployment_name(workflow, "noop"),
                       timeout=180)
        self._warm_up()

    def _stop_operator(self) -> None:
        self.operator.send_signal(signal.SIGTERM)
        try:
            self.operator.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.operator.kill()
            self.operator.wait(10)

    def _remove_workflows(self) -> None:
        """Runs and Workflows deleted while the operator runs, so it removes the worker
        Deployments (and their queues) itself; then wait until the pods' processes are gone."""
        try:
            self.delete_runs()
            kubectl("-n", self.namespace, "delete", "workflows", "--all", "--timeout=90s")
            deadline = time.monotonic() + 90
            while left := kubectl("-n", self.namespace, "get", "deploy,pods", "-o",
                                  "name").split():
                if time.monotonic() > deadline:
                    raise BenchError(f"still there after 90s: {' '.join(left)}")
                time.sleep(0.5)  # bounded by the deadline
        except Exception as error:  # the clean-up goes on; the namespace goes at the end
            print(f"warning: removing the Workflows of {self.namespace}: {error}",
                  file=sys.stderr, flush=True)

    def _name(self, prefix: str) -> str:
        self._serial += 1
        return f"{prefix}-{self._serial}"

    def _warm_up(self) -> None:
        """One run of each Workflow, one of them through the trigger (which also proves the
        trigger's binding is there: an event nobody takes fails as unroutable)."""
        self.create(run_body("peers-fan", self._name("warm"), {"items": list(range(10))}))
        self.create(run_body("peers-chain", self._name("warm")))
        self.create(run_body("peers-small", self._name("warm")))
        deadline = time.monotonic() + 60
        while True:
            try:
                self.link.publish(names.EVENTS_EXCHANGE, TOPIC, b"{}",
                                  message_id=self._name("warm")).result(30)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)  # the operator binds the trigger once it saw the Workflow
        self.watch.wait("the warm-up runs", lambda runs: finished(runs) >= 4, 300)
        self.delete_runs()

    def create(self, body: dict[str, Any]) -> None:
        self.custom.create_namespaced_custom_object(names.GROUP, names.VERSION,
                                                    self.namespace, names.RUN_PLURAL, body)

    def delete_runs(self) -> None:
        self.custom.delete_collection_namespaced_custom_object(
            names.GROUP, names.VERSION, self.namespace, names.RUN_PLURAL)
        self.watch.wait("the runs deleted", lambda runs: not runs, 180)

    def cpu(self) -> float:
        return report.cpu_seconds(Path(f"/proc/{self.operator.pid}/stat").read_text(),
                                  self.ticks)

    def _all_done(self, n: int) -> Callable[[dict[str, dict[str, Any]]], bool]:
        return lambda runs: len(runs) >= n and finished(runs) >= n

    @contextmanager
    def _costs(self, key: str, runs: int) -> Iterator[list[float]]:
        """Writes and operator CPU over the block, and after it until the writes settle
        (Events and the last status writes come just after a run is seen finished)."""
        if self.operator.poll() is not None:
            raise BenchError(f"the operator exited; see {self.log}")
        before, cpu = apiserver_requests(), self.cpu()
        sending: list[float] = []  # the block appends how long sending took
        yield sending
        after = apiserver_requests()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            time.sleep(0.5)  # bounded: until two readings agree
            again = apiserver_requests()
            if report.run_writes(report.delta(again, after)) == report.run_writes({}):
                break
            after = again
        writes = report.run_writes(report.delta(after, before))
        latencies = [when(b["status"]["finishedAt"]) - when(b["metadata"]["creationTimestamp"])
                     for b in self.watch.wait("runs", lambda _: True, 1).values()]
        self.spent.setdefault(key, []).append(Spent(runs, writes, self.cpu() - cpu, latencies,
                                                    sum(sending)))

    def measure(self, key: str) -> float:
        """Conveyor's figure of a workload, in the row's unit; the runs deleted after."""
        try:
            if key == "fanout":
                return self._one("fanout", "peers-fan", self.sizes.fanout,
                                 {"items": list(range(self.sizes.fanout))})
            if key == "chain":
                return self._one("chain", "peers-chain", self.sizes.chain, {})
            if key == "runs":
                return self._many(self.sizes.runs)
            n = self.sizes.events if key == "events" else self.sizes.events_large
            return self._events(key, n)
        finally:
            self.delete_runs()

    def _one(self, key: str, workflow: str, n: int, inputs: dict[str, Any]) -> float:
        with self._costs(key, 1) as sending:
            began = time.time()
            self.create(run_body(workflow, self._name(key), inputs))
            sending.append(time.time() - began)
            runs = self.watch.wait(f"the {key} run", self._all_done(1), 900)
        status = next(iter(runs.values()))["status"]
        seconds = when(status["finishedAt"]) - began
        return n / seconds if key == "fanout" else seconds * 1000 / n

    def _many(self, n: int) -> float:
        batches = [[run_body("peers-small", self._name("small")) for _ in range(i, n, CREATORS)]
                   for i in range(CREATORS)]
        with self._costs("runs", n) as sending:
            began = time.time()
            if self.creators == "kubectl":
                self._create_with_kubectl(batches)
            else:
                self._create_with_clients(batches)
            sending.append(time.time() - began)
            runs = self.watch.wait(f"{n} runs", self._all_done(n), 900)
        return n / (max(when(b["status"]["finishedAt"]) for b in runs.values()) - began)

    def _create_with_clients(self, batches: list[list[dict[str, Any]]]) -> None:
        """One thread per batch, each with an API client (and so a connection) of its own."""
        errors: list[BaseException] = []

        def create(batch: list[dict[str, Any]]) -> None:
            api, _ = load_cli_client(os.environ["KUBECONFIG"])
            custom = client.CustomObjectsApi(api)
            try:
                for body in batch:
                    custom.create_namespaced_custom_object(names.GROUP, names.VERSION,
                                                           self.namespace, names.RUN_PLURAL,
                                                           body)
            except BaseException as error:  # reported by the main thread
                errors.append(error)
            finally:
                api.close()

        threads = [threading.Thread(target=create, args=(b,)) for b in batches]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(300)
        if errors or any(t.is_alive() for t in threads):
            raise BenchError(f"creating the runs failed: {errors[:1] or 'timed out'}")

    def _create_with_kubectl(self, batches: list[list[dict[str, Any]]]) -> None:
        creators = [subprocess.Popen(
            ["kubectl", "-n", self.namespace, "create", "-f", "-", "-o", "name"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            for _ in batches]
        for proc, batch in zip(creators, batches, strict=True):
            assert proc.stdin is not None
            proc.stdin.write(json.dumps({"apiVersion": "v1", "kind": "List",
                                         "items": batch}).encode())
            proc.stdin.close()
        for proc in creators:
            assert proc.stderr is not None
            if proc.wait(timeout=300) != 0:
                raise BenchError(f"kubectl create failed: {proc.stderr.read().decode()}")
            proc.stderr.close()

    def _events(self, key: str, n: int) -> float:
        ids = [self._name("event") for _ in range(n)]
        with self._costs(key, n) as sending:
            began = time.time()
            confirms = [self.link.publish(names.EVENTS_EXCHANGE, TOPIC, b"{}", message_id=i)
                        for i in ids]
            for confirm in confirms:
                confirm.result(120)
            sending.append(time.time() - began)
            runs = self.watch.wait(f"{n} runs of events", self._all_done(n), 900)
        return n / (max(when(b["status"]["finishedAt"]) for b in runs.values()) - began)


# -- the table ---------------------------------------------------------------------------------


def rows(sizes: Sizes) -> dict[str, report.Row]:
    return {
        "fanout": report.Row(f"fan-out: {sizes.fanout:,} no-op tasks", "tasks/s", True,
                             report.Aim(">= 1.8x Celery", min_ratio=1.8)),
        "chain": report.Row(f"chain of {sizes.chain} no-op steps", "ms/step", False,
                            report.Aim("<= 1.5x Celery's ms/step", max_ratio=1.5)),
        "runs": report.Row(f"{sizes.runs} runs of a 3-step chain, created at once", "runs/s",
                           True, report.Aim(">= 1.0x Celery and >= 150 runs/s",
                                            min_ratio=1.0, min_value=150)),
        "events": report.Row(f"{sizes.events} events to a trigger -> {sizes.events} runs",
                             "runs/s", True, None,
                             celery_note=f"{sizes.events} chains at once"),
        "events-large": report.Row(
            f"{sizes.events_large:,} events to a trigger -> {sizes.events_large:,} runs "
            "Succeeded", "runs/s", True, report.Aim(">= 150 runs/s", min_value=150),
            celery_note=f"{sizes.events_large:,} chains at once"),
    }


def costs(key: str, label: str, spent: list[Spent], creators: str) -> list[str]:
    """The per-run cost lines of a workload: medians over its rounds."""
    per_run = [s.per_run() for s in spent]
    cpu = statistics.median(s.cpu / s.runs for s in spent)
    if key in ("fanout", "chain"):
        status = statistics.median(p["WorkflowRun status"] for p in per_run)
        return [f"  {label}: operator CPU {cpu:.2f} s for the run, "
                f"{status:.0f} WorkflowRun status writes"]
    writes = ", ".join(f"{kind} {statistics.median(p[kind] for p in per_run):.2f}"
                       for kind in per_run[0])
    how = "published and confirmed" if key.startswith("events") else \
        f"created by {CREATORS} concurrent {CREATOR_WORDS[creators]}"
    sending = statistics.median(s.sending for s in spent)
    lines = [f"  {label}: API-server writes per run: {writes}",
             f"  {label}: operator CPU {cpu * 1000:.1f} ms per run",
             f"  {label}: all {how} in {sending:.2f}s ({spent[0].runs / sending:.0f}/s)"]
    latencies = [x for s in spent for x in s.latencies]
    if latencies:
        lines.append(f"  {label}: latency per run, creationTimestamp (whole seconds) to "
                     f"finishedAt: p50 {report.percentile(latencies, 50):.2f}s, "
                     f"p95 {report.percentile(latencies, 95):.2f}s")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true",
                        help="smaller workloads for a smoke run: " + str(QUICK))
    parser.add_argument("--only", default=",".join(WORKLOADS),
                        help=f"comma-separated workloads among {', '.join(WORKLOADS)}")
    parser.add_argument("--replicas", type=int, default=4, help="Conveyor's worker replicas")
    parser.add_argument("--concurrency", type=int, default=32, help="per Conveyor replica")
    parser.add_argument("--celery-concurrency", type=int, default=4)
    parser.add_argument("--creators", choices=sorted(CREATOR_WORDS), default="client",
                        help="who creates the small runs: 8 API clients on threads "
                             "(default) or 8 kubectl processes")
    parser.add_argument("--operator-env", action="append", default=[], metavar="NAME=VALUE",
                        help="an environment variable of the operator, e.g. "
                             "CONVEYOR_WRITES_PER_SECOND=200 (repeatable; default: the "
                             "operator's defaults)")
    args = parser.parse_args()
    if any("=" not in e for e in args.operator_env):
        parser.error("--operator-env takes NAME=VALUE")
    operator_env = dict(e.split("=", 1) for e in args.operator_env)
    chosen = [w.strip() for w in args.only.split(",") if w.strip()]
    unknown = sorted(set(chosen) - set(WORKLOADS))
    if unknown or not chosen:
        parser.error(f"--only: unknown workload(s) {unknown}; choose among {WORKLOADS}")
    sizes = QUICK if args.quick else FULL
    # A SIGTERM (make interrupted, a CI timeout) unwinds like Ctrl-C: everything is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    table = rows(sizes)
    began = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="bench-peers-"))
    try:
        with ExitStack() as stack:
            celery = CeleryPeer(stack, tmp, args.celery_concurrency)
            conveyor = ConveyorSide(stack, tmp, sizes, args.replicas, args.concurrency,
                                    operator_env=operator_env, creators=args.creators)
            print(f"set up in {time.monotonic() - began:.0f}s (logs in {tmp})", flush=True)
            for r in range(args.rounds):
                for w, key in enumerate(k for k in WORKLOADS if k in chosen):
                    row = table[key]
                    sides: list[tuple[str, Callable[[], float], list[float]]] = [
                        ("Conveyor", lambda k=key: conveyor.measure(k), row.conveyor),
                        ("Celery", lambda k=key: celery.measure(k, sizes), row.celery)]
                    if (r + w) % 2:
                        sides.reverse()
                    row.first.append(sides[0][0])
                    for side, measure, into in sides:
                        into.append(measure())
                        print(f"  round {r + 1} {key}: {side} {report.number(into[-1])} "
                              f"{row.unit}", flush=True)
    except BenchError as error:
        print(f"bench_peers: {error} (logs in {tmp})", file=sys.stderr)
        return 1
    shown = [table[k] for k in WORKLOADS if k in chosen]
    if "runs" in conveyor.spent:
        events = report.Row("Events per small run", "Events/run", False,
                            report.Aim("<= 1", max_value=1.0))
        events.conveyor = [s.per_run()["Events"] for s in conveyor.spent["runs"]]
        shown.append(events)
    print(f"\nConveyor vs Celery {celery_version(celery)}: {args.rounds} alternating rounds; "
          f"Conveyor: operator + {args.replicas} worker replicas x {args.concurrency}; Celery: "
          f"prefork -c {args.celery_concurrency}, redis result backend; same RabbitMQ node; "
          f"runs created by {CREATORS} concurrent {CREATOR_WORDS[args.creators]}"
          + (f"; operator env {' '.join(args.operator_env)}" if operator_env else "") + "\n")
    print(report.table(shown))
    print("\nPer round:")
    print(report.rounds([table[k] for k in WORKLOADS if k in chosen]))
    print("\nWhat Conveyor spent (API-server writes from apiserver_request_total; operator "
          "CPU = utime+stime):")
    for key in WORKLOADS:
        if key in conveyor.spent:
            for line in costs(key, table[key].label, conveyor.spent[key], args.creators):
                print(line)
    print(f"\nwall time of the invocation: {time.monotonic() - began:.0f}s")
    return 0


def celery_version(celery: CeleryPeer) -> str:
    done = subprocess.run([celery.python, "-c", "import celery; print(celery.__version__)"],
                          capture_output=True, text=True, check=False, timeout=60)
    return done.stdout.strip() or "?"


if __name__ == "__main__":
    sys.exit(main())
