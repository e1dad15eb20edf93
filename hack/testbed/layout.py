"""Where the test bed keeps its state, and which ports it listens on."""

from __future__ import annotations

import json
import os
import socket
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NODE_NAME = "conveyor-node"
"""The process node (nodeagent.py): every pod's command as a local process; the default."""
CONTAINER_NODE_NAME = "conveyor-containers"
"""The container node (containers.py): a real kubelet with containerd and runc, tainted and
labelled `conveyor.dev/runtime=containerd`, for the pods of namespaces that ask for it."""


def state_dir() -> Path:
    return Path(os.environ.get("CONVEYOR_TESTBED_DIR") or REPO / ".testbed").resolve()


def cache_dir() -> Path:
    return Path(os.environ.get("CONVEYOR_CACHE") or Path.home() / ".cache" / "conveyor")


@dataclass(frozen=True)
class Ports:
    etcd_client: int
    etcd_peer: int
    apiserver: int
    amqp: int
    erlang_dist: int
    epmd: int
    amqps: int
    """RabbitMQ's TLS listener (127.0.0.1 only), beside the plain `amqp` one."""
    s3: int
    """The object store's S3 endpoint (plain HTTP, 127.0.0.1 only)."""
    s3_tls: int
    """The object store's HTTPS endpoint (127.0.0.1 only), verified with `Paths.amqp_ca`."""
    kafka: int
    """Kafka's plain listener (127.0.0.1 only): the bootstrap server."""
    kafka_controller: int
    """Kafka's KRaft controller listener (127.0.0.1 only; the broker is its own quorum)."""
    kafka_tls: int
    """Kafka's TLS listener (127.0.0.1 only), verified with `Paths.amqp_ca`."""
    kafka_pods: int
    """Kafka's listener for the container node's pods (127.0.0.1 only): it advertises the
    node IP, where the bridge forwards this port, instead of 127.0.0.1."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ports() -> Ports:
    """The ports of this state directory, chosen once and then kept.

    A state directory made before a port was added keeps its ports and gets a free one for
    each new field, so an old test bed comes up again without a purge.
    """
    path = state_dir() / "ports.json"
    known: dict[str, int] = json.loads(path.read_text()) if path.exists() else {}
    missing = [name for name in Ports.__dataclass_fields__ if name not in known]
    if not missing:
        return Ports(**known)
    fresh: set[int] = set()
    while len(fresh) < len(missing):
        port = _free_port()
        if port not in known.values():
            fresh.add(port)
    # A fresh state directory gets its ports in field order, as it always did.
    known.update(zip(missing, sorted(fresh), strict=True))
    result = Ports(**known)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(result)))
    return result


@dataclass(frozen=True)
class Paths:
    root: Path

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def pids(self) -> Path:
        return self.root / "pids"

    @property
    def pods(self) -> Path:
        return self.root / "pods"

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd"

    @property
    def rabbitmq(self) -> Path:
        return self.root / "rabbitmq"

    @property
    def s3(self) -> Path:
        """The object store's credentials (it keeps its objects in memory)."""
        return self.root / "s3"

    @property
    def kafka(self) -> Path:
        """Kafka's configuration and its log directories (the records)."""
        return self.root / "kafka"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def amqp_url_file(self) -> Path:
        return self.root / "amqp-url"

    @property
    def amqps_url_file(self) -> Path:
        return self.root / "amqps-url"

    @property
    def amqp_ca(self) -> Path:
        """The CA that signed RabbitMQ's TLS certificate (not the cluster's CA)."""
        return self.pki / "amqp-ca.crt"

    @property
    def containers(self) -> Path:
        """The container node's state: containerd's root and state, the kubelet's root dir,
        their configs, the CNI config and IPAM data, the pods' logs."""
        return self.root / "containers"

    @property
    def bridge_socket(self) -> Path:
        """The bridge's HTTP CONNECT proxy: the API server's way to the container node."""
        return self.root / "bridge.sock"

    def ensure(self) -> Paths:
        for d in (self.root, self.pki, self.logs, self.pids, self.pods, self.rabbitmq,
                  self.s3, self.kafka):
            d.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)
        return self


def paths() -> Paths:
    return Paths(state_dir())
