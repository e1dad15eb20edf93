"""Kill one part of the test bed with SIGKILL and start it again on the data it left, the way
a crashed daemon is restarted: for fault tests and the soak (`make soak`).

    python -m testbed kill etcd | kube-apiserver | rabbitmq | s3server | kafka | pod/<ns>/<name>
    python -m testbed restart etcd | kube-apiserver | rabbitmq | s3server | kafka
    python -m testbed kill|restart bridge | containerd | kubelet    (the container node)

A restart reuses what `up` runs for the part (same flags, same ports, same data directory:
etcd's `--data-dir`, RabbitMQ's mnesia with its quorum queues' logs, Kafka's log
directories), so what was written
before the kill is there after it. The object store (s3server) is the exception: it keeps
objects in memory, so it comes back empty, without its buckets: a fault test that takes it
down makes again the buckets it needs. A pod's containers are killed but not restarted here:
the node agent does that under the pod's `restartPolicy`, as a kubelet would.
The container node's parts: killing containerd or the kubelet leaves the containers running
(their shims hold them), as on a real node; a restart picks them up again. `pod/...` is for
the process node's pods only.
"""

from __future__ import annotations

import json
import signal
import urllib.request
from pathlib import Path

import pika

from . import containers, controlplane, kafka, objectstore, procs, rabbitmq
from .layout import Paths, Ports
from .nodeagent import POD_MARKER

# The daemons this module can kill and restart, and the pid-file names they run under.
# epmd is left alone: it outlives a RabbitMQ crash on a real host too.
DAEMONS = ("etcd", "kube-apiserver", "rabbitmq", objectstore.NAME, kafka.NAME,
           *containers.PARTS)


def kill(p: Paths, name: str, timeout: float = 20) -> list[int]:
    """SIGKILL a daemon's whole process group (RabbitMQ's beam and its helpers with it) and
    wait until it is gone; return the pids killed (none if it was not running)."""
    if name.startswith("pod/"):
        return kill_pod(p, name.removeprefix("pod/"), timeout)
    _check(name)
    pid = procs.running_pid(p.pids, name)
    if pid is None:
        return []
    _kill_groups([pid], timeout, name)
    return [pid]


def restart(p: Paths, ports: Ports, name: str, wait: bool = True, timeout: float = 120) -> int:
    """Start a killed daemon again on its data; a running one is left as it is. With `wait`,
    return only once it serves (raise TimeoutError after `timeout`)."""
    _check(name)
    pid = start(p, ports, name)
    if wait:
        def up() -> bool:
            nonlocal pid
            if procs.running_pid(p.pids, name) is None:
                # Died while starting (seen once on a loaded CI machine with RabbitMQ right
                # after its SIGKILL): start it again, as a supervisor would.
                pid = start(p, ports, name)
                return False
            return serving(p, ports, name)

        procs.wait_until(up, timeout, f"{name} after a restart", interval=0.3)
    return pid


def start(p: Paths, ports: Ports, name: str) -> int:
    """Start a daemon that is not running (on its data, with the flags of `up`); its pid.
    The log lines it left when it did not stay up are in the error."""
    _check(name)
    bin_dir = controlplane.binaries()
    if name == "etcd":
        controlplane.start_etcd(p, ports, bin_dir)
    elif name == "kube-apiserver":
        controlplane.start_apiserver(p, ports, bin_dir)
    elif name == objectstore.NAME:
        objectstore.start(p, ports)
    elif name == kafka.NAME:
        kafka.start(p, ports)
    elif name in containers.PARTS:
        containers.start_part(p, ports, name, bin_dir)
    else:
        rabbitmq.start(p, ports)
    pid = procs.running_pid(p.pids, name)
    if pid is None:
        raise RuntimeError(f"{name} exited at once: {log_tail(p, name)!r}")
    return pid


def log_tail(p: Paths, name: str, lines: int = 8) -> str:
    """The last lines of a daemon's own log (its stdout and stderr), for an error message."""
    try:
        text = (p.logs / f"{name}.log").read_text(errors="replace")
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text.splitlines()[-lines:] if line.strip())


def serving(p: Paths, ports: Ports, name: str) -> bool:
    """Whether the daemon answers: etcd's /health, the API server's /readyz, an AMQP
    connection to RabbitMQ, a signed ListBuckets to the object store, a metadata request
    to Kafka. False when it is not running (it may be started meanwhile)."""
    _check(name)
    if procs.running_pid(p.pids, name) is None:
        return False
    if name == "etcd":
        url = f"http://127.0.0.1:{ports.etcd_client}/health"
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(json.loads(response.read()).get("health") == "true")
    if name == "rabbitmq":
        params = pika.URLParameters(rabbitmq.amqp_url(p, ports))
        params.connection_attempts = 1
        params.socket_timeout = 2
        pika.BlockingConnection(params).close()
        return True
    if name == objectstore.NAME:
        return objectstore.serving(p, ports)
    if name == kafka.NAME:
        return kafka.serving(p, ports)
    if name in containers.PARTS:
        return containers.serving(p, name)
    return controlplane.ready(p, ports)


def kill_pod(p: Paths, pod: str, timeout: float = 20) -> list[int]:
    """SIGKILL the live container processes of `<namespace>/<name>`, found by the pid files the
    node agent writes (so no API call is needed: this works while the API server is down)."""
    pids = pod_pids(p, pod)
    _kill_groups(pids, timeout, f"pod {pod}")
    return pids


def pod_pids(p: Paths, pod: str) -> list[int]:
    """The live container processes of `<namespace>/<name>`, by their pid files."""
    pids = [pid for pid in (_pid_of(f) for f in sorted((p.pods / pod).glob("*.pid"))) if pid]
    # Only processes of this test bed's pods: a pid file outlives its process, and the pid
    # may have been reused by anything else since.
    mine = set(procs.marked_processes(p.root, also=POD_MARKER))
    return [pid for pid in pids if pid in mine]


def live_pods(p: Paths, namespace: str) -> list[str]:
    """`<namespace>/<name>` of the pods with a live container process, by the pid files."""
    folder = p.pods / namespace
    pods = sorted(folder.iterdir()) if folder.is_dir() else []
    return [f"{namespace}/{pod.name}" for pod in pods if pod_pids(p, f"{namespace}/{pod.name}")]


def _pid_of(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _kill_groups(pids: list[int], timeout: float, what: str) -> None:
    # Every member of each group, taken before the kill: a restart must not find the old
    # beam still holding the AMQP port while it exits.
    members = {m for pid in pids for m in [pid, *procs.group_members(pid)]}
    for pid in pids:
        procs.signal_group(pid, signal.SIGKILL)

    def gone() -> bool:
        return not any(procs.alive(pid) for pid in members)

    procs.wait_until(gone, timeout, f"{what} to die after SIGKILL", interval=0.05)


def _check(name: str) -> None:
    if name not in DAEMONS:
        raise ValueError(f"unknown part {name!r}: one of {', '.join(DAEMONS)} or pod/NS/NAME")
