"""`python -m testbed up|down|env|status|kill|restart|images` (with PYTHONPATH=hack): the test
bed's front door.

Two nodes: the process node `conveyor-node` (nodeagent.py: pods' commands as local processes,
where every pod goes by default and every existing test runs) and, when containerd, runc and
the CNI plugins are installed, the container node `conveyor-containers` (containers.py: a real
kubelet with containerd in the netns cvy-<N>, for the pods of namespaces annotated to go
there; tests/support/containers.py). CONVEYOR_TESTBED_CONTAINERS=0 leaves the container node
out.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sys
import time
from dataclasses import asdict
from pathlib import Path

from . import containers, controlplane, kafka, netns, objectstore, parts, procs, rabbitmq
from .layout import CONTAINER_NODE_NAME, NODE_NAME, REPO, Paths, Ports, paths, ports
from .rest import Rest


def _venv_bin() -> Path:
    return Path(sys.executable).parent


def _agent_env(bin_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "CONVEYOR_AMQP_URL")}
    env["PYTHONPATH"] = str(REPO / "hack")
    env["PATH"] = os.pathsep.join([str(_venv_bin()), str(bin_dir), env.get("PATH", "")])
    return env


def _wait_cluster(p: Paths, ports_: Ports, timeout: float = 90) -> None:
    rest = Rest(controlplane.server_url(ports_), str(p.pki / "ca.crt"),
                str(p.pki / "admin.crt"), str(p.pki / "admin.key"))

    def node_ready() -> bool:
        if procs.running_pid(p.pids, "nodeagent") is None:
            raise RuntimeError(f"the node agent exited; see {p.logs / 'nodeagent.log'}")
        node = rest.get(f"/api/v1/nodes/{NODE_NAME}")
        return any(c["type"] == "Ready" and c["status"] == "True"
                   for c in node.get("status", {}).get("conditions", []))

    procs.wait_until(node_ready, timeout, f"node {NODE_NAME}")
    # The controller-manager is working once it has made the default ServiceAccount.
    procs.wait_until(lambda: rest.get("/api/v1/namespaces/default/serviceaccounts/default"),
                     timeout, "the default ServiceAccount (kube-controller-manager)")


def _admin_rest(p: Paths, ports_: Ports) -> Rest:
    return Rest(controlplane.server_url(ports_), str(p.pki / "ca.crt"),
                str(p.pki / "admin.crt"), str(p.pki / "admin.key"))


def up() -> None:
    started = time.monotonic()
    p = paths().ensure()
    ports_ = ports()
    bin_dir = controlplane.binaries()
    objectstore.binary()  # built (when cold) before any daemon starts, like the control plane
    kafka.home()
    built = time.monotonic()
    rabbitmq.start(p, ports_)
    objectstore.start(p, ports_)
    kafka.start(p, ports_)
    controlplane.start_etcd(p, ports_, bin_dir)
    controlplane.start_apiserver(p, ports_, bin_dir)
    controlplane.wait_apiserver(p, ports_)
    controlplane.start_controllers(p, bin_dir)
    procs.start("nodeagent", [sys.executable, "-m", "testbed.nodeagent"], pids=p.pids,
                logs=p.logs, state=p.root, env=_agent_env(bin_dir))
    with_containers = containers.enabled()
    if with_containers:
        containers.start(p, ports_, bin_dir, _admin_rest(p, ports_))
    else:
        missing = containers.missing_tools()
        print("Test bed without the container node: "
              + (f"missing {', '.join(missing)}" if missing else "CONVEYOR_TESTBED_CONTAINERS=0"),
              file=sys.stderr)
    _wait_cluster(p, ports_)
    if with_containers:
        containers.wait_ready(p, _admin_rest(p, ports_))
    rabbitmq.wait(p, ports_)
    objectstore.wait(p, ports_)
    kafka.wait(p, ports_)
    (p.root / "bin-dir").write_text(f"{bin_dir}\n")
    nodes = f"{NODE_NAME} and {CONTAINER_NODE_NAME}" if with_containers else NODE_NAME
    print(f"Test bed up in {time.monotonic() - built:.1f}s "
          f"(binaries ready after {built - started:.1f}s; nodes {nodes}); state in {p.root}",
          file=sys.stderr)


def down(purge: bool) -> None:
    p = paths()
    if not p.root.exists():
        return
    procs.stop(p.pids, "nodeagent", grace=40)
    containers.stop(p)
    controlplane.stop(p)
    rabbitmq.stop(p)
    objectstore.stop(p)
    kafka.stop(p)
    # Anything the test bed started and that outlived its parent (pods of a killed agent).
    procs.terminate(procs.marked_processes(p.root), grace=5)
    left = procs.marked_processes(p.root)
    if left:
        sys.exit(f"processes still running after testbed down: {left}")
    listening = [port for port in asdict(ports()).values() if _listening(port)]
    if listening:
        sys.exit(f"ports still listening after testbed down: {listening}")
    mounts = containers.mounts_under(p.root)
    if mounts or netns.exists(p.root):
        sys.exit(f"left after testbed down: mounts {mounts}, "
                 f"netns {netns.name(p.root) if netns.exists(p.root) else 'none'}")
    if purge:
        shutil.rmtree(p.root)
    print(f"Test bed down{' and purged' if purge else ''}; state was in {p.root}",
          file=sys.stderr)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def env() -> None:
    p = paths()
    if not p.admin_kubeconfig.exists() or not p.amqp_url_file.exists():
        sys.exit("the test bed has not been started: run `make testbed-up`")
    print(f"export KUBECONFIG={p.admin_kubeconfig}")
    print(f"export CONVEYOR_AMQP_URL='{p.amqp_url_file.read_text().strip()}'")
    # The TLS listener's URL under a name of the test bed's own (the product reads only
    # CONVEYOR_AMQP_URL); the CA file is ignored for amqp://, so exporting it costs nothing.
    if p.amqps_url_file.exists():
        print(f"export CONVEYOR_AMQPS_URL='{p.amqps_url_file.read_text().strip()}'")
        print(f"export CONVEYOR_AMQP_CA_FILE={p.amqp_ca}")
    # The object store's endpoint and key pair, under the names conveyor.store reads.
    for name, value in objectstore.env_vars(p, ports()).items():
        print(f"export {name}='{value}'")
    # Kafka's bootstrap server, under the name conveyor.kafka reads (and its TLS listener's).
    for name, value in kafka.env_vars(ports()).items():
        print(f"export {name}='{value}'")
    # The same services as the container node's pods reach them (through the bridge).
    if netns.exists(p.root) and p.amqps_url_file.exists():
        for name, value in containers.env_vars(p, ports(), p.amqp_url_file.read_text().strip(),
                                               p.amqps_url_file.read_text().strip()).items():
            print(f"export {name}='{value}'")
    bin_dir = (p.root / "bin-dir").read_text().strip()
    print(f'export PATH="{bin_dir}:$PATH"')


def status() -> int:
    p = paths()
    names = ["epmd", "rabbitmq", "etcd", "kube-apiserver", "kube-controller-manager",
             "kube-scheduler", "nodeagent", objectstore.NAME, kafka.NAME]
    # The container node's parts count only where it runs (its tools are installed).
    optional = list(containers.PARTS) if containers.enabled() else []
    down_parts = 0
    for name in names + optional:
        pid = procs.running_pid(p.pids, name) if p.root.exists() else None
        down_parts += pid is None
        print(f"{name:26} {'running pid ' + str(pid) if pid else 'stopped'}")
    if not optional:
        print(f"{'(container node)':26} not available: "
              f"{', '.join(containers.missing_tools()) or 'CONVEYOR_TESTBED_CONTAINERS=0'}")
    return 1 if down_parts else 0


def main() -> None:
    parser = argparse.ArgumentParser(prog="testbed", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="build (when cold) and start every part; idempotent")
    d = sub.add_parser("down", help="stop every part; nothing is left running or listening")
    d.add_argument("--purge", action="store_true", help="also delete the state directory")
    sub.add_parser("env", help="print export lines for KUBECONFIG, CONVEYOR_AMQP_URL, "
                               "CONVEYOR_AMQPS_URL, CONVEYOR_AMQP_CA_FILE and "
                               "CONVEYOR_S3_{ENDPOINT,REGION,ACCESS_KEY,SECRET_KEY} and "
                               "CONVEYOR_KAFKA_BOOTSTRAP_SERVERS, and the container node's "
                               "CONVEYOR_CONTAINER_* (its pods' view of them)")
    sub.add_parser("status", help="show which parts run")
    k = sub.add_parser("kill", help="SIGKILL one part (for fault tests): "
                                    f"{', '.join(parts.DAEMONS)} or pod/NAMESPACE/NAME")
    k.add_argument("part")
    r = sub.add_parser("restart", help="start a killed part again on its data and wait until "
                                       f"it serves: {', '.join(parts.DAEMONS)}")
    r.add_argument("part", choices=parts.DAEMONS)
    i = sub.add_parser("images", help="the container node's images")
    i_sub = i.add_subparsers(dest="images_command", required=True)
    imp = i_sub.add_parser("import", help="import image tars (docker-archive or OCI) into "
                                          "containerd's k8s.io namespace")
    imp.add_argument("tars", nargs="+", type=Path)
    imp.add_argument("--force", action="store_true", help="import again what was imported")
    args = parser.parse_args()
    if args.command == "up":
        up()
    elif args.command == "down":
        down(args.purge)
    elif args.command == "env":
        env()
    elif args.command == "kill":
        killed = parts.kill(paths(), args.part)
        print(f"Killed {args.part} pids={killed or 'none: it was not running'}",
              file=sys.stderr)
    elif args.command == "images":
        p = paths()
        if procs.running_pid(p.pids, containers.CONTAINERD) is None:
            sys.exit("the container node is not running: `make testbed-up` on a machine with "
                     "containerd, runc and the CNI plugins")
        done = containers.import_images(p, args.tars, force=args.force)
        print(f"Imported {len(done)} of {len(args.tars)} image tars "
              "(the others were imported before)", file=sys.stderr)
    elif args.command == "restart":
        pid = parts.restart(paths(), ports(), args.part)
        print(f"Restarted {args.part} pid={pid}", file=sys.stderr)
    else:
        sys.exit(status())


if __name__ == "__main__":
    main()
