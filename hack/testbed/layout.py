"""Where the test bed keeps its state, and which ports it listens on."""

from __future__ import annotations

import json
import os
import socket
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NODE_NAME = "conveyor-node"


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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ports() -> Ports:
    """The ports of this state directory, chosen once and then kept."""
    path = state_dir() / "ports.json"
    if path.exists():
        return Ports(**json.loads(path.read_text()))
    chosen: set[int] = set()
    while len(chosen) < len(Ports.__dataclass_fields__):
        chosen.add(_free_port())
    result = Ports(*sorted(chosen))
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
    def admin_kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def amqp_url_file(self) -> Path:
        return self.root / "amqp-url"

    def ensure(self) -> Paths:
        for d in (self.root, self.pki, self.logs, self.pids, self.pods, self.rabbitmq):
            d.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)
        return self


def paths() -> Paths:
    return Paths(state_dir())
