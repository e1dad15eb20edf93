"""etcd, kube-apiserver, kube-controller-manager and kube-scheduler as local processes, on the
host's loopback; the container node reaches the API server at 10.0.0.1:443 in its netns and the
API server reaches its kubelet through the bridge (containers.py, bridge.py).

Flags follow controller-runtime's envtest and kwokctl's binary runtime: everything on loopback,
RBAC on, real service-account tokens, no cloud provider, no listening ports beyond the API server
and etcd's client and peer ports.
"""

from __future__ import annotations

import os
import ssl
import subprocess
import urllib.request
from pathlib import Path

from . import containers, pki, procs
from .layout import REPO, Paths, Ports


def binaries() -> Path:
    """The cached binaries, built on a cold machine (this takes long: see the README)."""
    out = subprocess.run(
        ["bash", str(REPO / "hack" / "build-testbed.sh")],
        check=True, stdout=subprocess.PIPE, text=True,
    )
    return Path(out.stdout.strip().splitlines()[-1])


def server_url(ports: Ports) -> str:
    return f"https://127.0.0.1:{ports.apiserver}"


def _write_kubeconfigs(paths: Paths, ports: Ports) -> None:
    admin = {"client-certificate": str(paths.pki / "admin.crt"),
             "client-key": str(paths.pki / "admin.key")}
    paths.admin_kubeconfig.write_text(
        pki.kubeconfig(server_url(ports), paths.pki / "ca.crt", admin)
    )
    paths.admin_kubeconfig.chmod(0o600)


def start_etcd(paths: Paths, ports: Ports, bin_dir: Path) -> None:
    client = f"http://127.0.0.1:{ports.etcd_client}"
    peer = f"http://127.0.0.1:{ports.etcd_peer}"
    procs.start(
        "etcd",
        [
            str(bin_dir / "etcd"),
            "--name=testbed",
            f"--data-dir={paths.etcd_data}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=testbed={peer}",
            "--listen-metrics-urls=",
            "--unsafe-no-fsync=true",  # a throwaway store: speed matters, durability does not
            "--quota-backend-bytes=8589934592",
            "--log-level=warn",
        ],
        pids=paths.pids, logs=paths.logs, state=paths.root,
    )


def start_apiserver(paths: Paths, ports: Ports, bin_dir: Path) -> None:
    pki.ensure(paths.pki)
    _write_kubeconfigs(paths, ports)
    p = paths.pki
    procs.start(
        "kube-apiserver",
        [
            str(bin_dir / "kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{ports.etcd_client}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={ports.apiserver}",
            f"--cert-dir={p}",
            f"--tls-cert-file={p / 'apiserver.crt'}",
            f"--tls-private-key-file={p / 'apiserver.key'}",
            f"--client-ca-file={p / 'ca.crt'}",
            f"--service-account-key-file={p / 'sa.pub'}",
            f"--service-account-signing-key-file={p / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            "--api-audiences=https://kubernetes.default.svc.cluster.local",
            "--service-cluster-ip-range=10.0.0.0/24",
            # Node: the container node's kubelet (system:node:*) sees only its own pods' objects.
            "--authorization-mode=Node,RBAC",
            # PodNodeSelector and PodTolerationRestriction: a namespace's annotations send its
            # pods to the container node (containers.namespace_annotations).
            "--enable-admission-plugins=NodeRestriction,PodNodeSelector,"
            "PodTolerationRestriction",
            "--allow-privileged=true",
            "--enable-priority-and-fairness=false",
            "--endpoint-reconciler-type=none",
            "--profiling=false",
            "--v=1",
            # The egress selector (to the kubelet through the bridge) and the kubelet client.
            *containers.apiserver_flags(paths),
        ],
        pids=paths.pids, logs=paths.logs, state=paths.root,
    )


def _ssl_context(paths: Paths) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(paths.pki / "ca.crt"))
    ctx.load_cert_chain(str(paths.pki / "admin.crt"), str(paths.pki / "admin.key"))
    return ctx


def ready(paths: Paths, ports: Ports) -> bool:
    """True when the API server's /readyz says so."""
    with urllib.request.urlopen(
        f"{server_url(ports)}/readyz", context=_ssl_context(paths), timeout=2
    ) as response:
        return bool(response.status == 200)


def wait_apiserver(paths: Paths, ports: Ports, timeout: float = 120) -> None:
    def check() -> bool:
        for name in ("etcd", "kube-apiserver"):
            if procs.running_pid(paths.pids, name) is None:
                raise RuntimeError(f"{name} exited; see {paths.logs / (name + '.log')}")
        return ready(paths, ports)

    procs.wait_until(check, timeout, "kube-apiserver /readyz", interval=0.3)


def start_controllers(paths: Paths, bin_dir: Path) -> None:
    common = [f"--kubeconfig={paths.admin_kubeconfig}", "--leader-elect=false",
              "--secure-port=0", "--v=1"]
    procs.start(
        "kube-controller-manager",
        [
            str(bin_dir / "kube-controller-manager"), *common,
            f"--root-ca-file={paths.pki / 'ca.crt'}",
            f"--service-account-private-key-file={paths.pki / 'sa.key'}",
            "--use-service-account-credentials=false",
            "--controllers=*,-bootstrapsigner,-tokencleaner,-nodeipam,-cloud-node-lifecycle,-service-lb-controller,-node-route-controller",
            # The node agent is the only node; evict nothing while it is briefly slow.
            "--node-monitor-grace-period=60s",
            "--concurrent-deployment-syncs=10",
            "--concurrent-replicaset-syncs=10",
            "--concurrent-gc-syncs=20",
            "--kube-api-qps=200",
            "--kube-api-burst=400",
        ],
        pids=paths.pids, logs=paths.logs, state=paths.root,
    )
    procs.start(
        "kube-scheduler",
        [str(bin_dir / "kube-scheduler"), *common, "--kube-api-qps=200", "--kube-api-burst=400"],
        pids=paths.pids, logs=paths.logs, state=paths.root,
    )


def stop(paths: Paths) -> None:
    for name in ("kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"):
        procs.stop(paths.pids, name, grace=15)


def environ_for_kubectl(paths: Paths, bin_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["KUBECONFIG"] = str(paths.admin_kubeconfig)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return env
