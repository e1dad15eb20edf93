"""The container node: a real kubelet with containerd and runc, beside the process node.

The process node (nodeagent.py, node `conveyor-node`) runs every pod's command as a local
process and stays the default: every pod goes there unless it asks otherwise. The container
node (node `conveyor-containers`) is tainted and labelled `conveyor.dev/runtime=containerd`;
a namespace annotated by `namespace_annotations()` (the API server's PodNodeSelector and
PodTolerationRestriction admission plugins) sends all its pods to it, so they run from images
with everything a kubelet does (probes, volumes, restarts, image pulls, `kubectl logs/exec`).

Parts, each a daemon of its own (`testbed kill|restart kubelet|containerd|bridge`):
- the netns `cvy-<N>` (netns.py), where containerd and the kubelet run (`nsenter --net`, not
  `ip netns exec`: that one also makes a mount namespace with a fresh /sys, and the kubelet
  then finds no cgroup mounts);
- bridge.py: pods to the host's services, the API server to the kubelet;
- containerd (`restrict_oom_score_adj`: no CAP_SYS_RESOURCE here), everything under
  `Paths.containers`, the sandbox image the local pause image (nothing can be pulled);
- the kubelet: x509 client certificate `system:node:conveyor-containers`, serving with x509
  client auth and Webhook authorization, cgroupfs under `/conveyor-<N>` (two test beds never
  share cgroups), image GC off (the local images cannot be pulled again), no evictions.

Images: the pause image (hack/pause/pause.go, FROM scratch) is built with umoci and imported
at `up`, and so is every `*.tar` in `~/.cache/conveyor/images/`; `python -m testbed images
import <tar>...` imports more. `stop()` leaves nothing: no process, mount, cgroup or netns.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from . import netns, pki, procs
from .layout import CONTAINER_NODE_NAME, REPO, Paths, Ports, cache_dir
from .rest import ApiError, Rest

CONTAINERD, KUBELET, BRIDGE = "containerd", "kubelet", "bridge"
PARTS = (BRIDGE, CONTAINERD, KUBELET)
NAMESPACE = "k8s.io"  # containerd's namespace of the CRI plugin
PAUSE_IMAGE = "conveyor.local/pause:3.10"
KUBELET_PORT = 10250
TAINT_KEY = "conveyor.dev/runtime"
TAINT_VALUE = "containerd"
CNI_BIN = Path("/usr/lib/cni")
_TOOLS = ("containerd", "containerd-shim-runc-v2", "runc", "ctr", "nsenter", "ip", "umoci")
_CNI = ("ptp", "host-local", "loopback")
_CGROUP_FS = Path("/sys/fs/cgroup")


def missing_tools() -> list[str]:
    """What this machine lacks for the container node (empty: it can run)."""
    missing = [tool for tool in _TOOLS if shutil.which(tool) is None]
    missing += [f"{CNI_BIN / p}" for p in _CNI if not (CNI_BIN / p).exists()]
    if os.geteuid() != 0:
        missing.append("root (network namespaces, mounts, cgroups)")
    return missing


def enabled() -> bool:
    """Whether `up` runs the container node: its tools are here and
    CONVEYOR_TESTBED_CONTAINERS is not 0."""
    return os.environ.get("CONVEYOR_TESTBED_CONTAINERS", "1") != "0" and not missing_tools()


def namespace_annotations() -> dict[str, str]:
    """A namespace's annotations that send all its pods to the container node."""
    toleration = {"key": TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}
    return {"scheduler.alpha.kubernetes.io/node-selector": f"{TAINT_KEY}={TAINT_VALUE}",
            "scheduler.alpha.kubernetes.io/defaultTolerations": json.dumps([toleration])}


def socket_path(p: Paths) -> Path:
    return p.containers / "containerd.sock"


def cgroup_root(p: Paths) -> str:
    return f"/conveyor-{netns.name(p.root).removeprefix('cvy-')}"


def env_vars(p: Paths, ports: Ports, amqp_url: str, amqps_url: str) -> dict[str, str]:
    """The endpoints as the container node's pods reach them (through the bridge)."""
    node = netns.NODE_IP

    def at_node(url: str) -> str:
        return url.replace("@127.0.0.1:", f"@{node}:").replace("@localhost:", f"@{node}:")

    return {
        "CONVEYOR_CONTAINER_NODE": CONTAINER_NODE_NAME,
        "CONVEYOR_CONTAINER_AMQP_URL": at_node(amqp_url),
        "CONVEYOR_CONTAINER_AMQPS_URL": at_node(amqps_url),
        "CONVEYOR_CONTAINER_S3_ENDPOINT": f"http://{node}:{ports.s3}",
        "CONVEYOR_CONTAINER_S3_TLS_ENDPOINT": f"https://{node}:{ports.s3_tls}",
        "CONVEYOR_CONTAINER_KAFKA_BOOTSTRAP_SERVERS": f"{node}:{ports.kafka_pods}",
        "CONVEYOR_CONTAINER_API_SERVER": f"https://{netns.SERVICE_IP}:443",
    }


# -- configuration ----------------------------------------------------------------------------
def _containerd_config(p: Paths) -> str:
    c = p.containers
    return f"""version = 2
root = "{c / 'containerd-root'}"
state = "{c / 'containerd-state'}"
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs",
                    "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "{socket_path(p)}"
[plugins."io.containerd.grpc.v1.cri"]
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  sandbox_image = "{PAUSE_IMAGE}"
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{c / 'cni-conf'}"
"""


def _cni_config(p: Paths) -> dict[str, Any]:
    ipam = {"type": "host-local", "dataDir": str(p.containers / "cni-ipam"),
            "ranges": [[{"subnet": netns.POD_SUBNET}]],
            "routes": [{"dst": f"{netns.NODE_IP}/32"}, {"dst": f"{netns.SERVICE_IP}/32"}]}
    return {"cniVersion": "1.0.0", "name": "cvy-pods",
            "plugins": [{"type": "ptp", "ipMasq": False, "ipam": ipam}]}


def _kubelet_config(p: Paths) -> dict[str, Any]:
    k = p.pki
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        "failCgroupV1": False, "failSwapOn": False, "cgroupDriver": "cgroupfs",
        "cgroupRoot": cgroup_root(p), "cgroupsPerQOS": True,
        "containerRuntimeEndpoint": f"unix://{socket_path(p)}",
        "address": netns.NODE_IP, "port": KUBELET_PORT, "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1", "healthzPort": 10248,
        "tlsCertFile": str(k / "kubelet-serving.crt"),
        "tlsPrivateKeyFile": str(k / "kubelet-serving.key"),
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                           "x509": {"clientCAFile": str(k / "ca.crt")}},
        "authorization": {"mode": "Webhook"},
        "podLogsDir": str(p.containers / "pod-logs"),
        "registerNode": True,
        "registerWithTaints": [{"key": TAINT_KEY, "value": TAINT_VALUE,
                                "effect": "NoSchedule"}],
        # The images are local and cannot be pulled again: never collect them.
        "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
        "evictionHard": {}, "enforceNodeAllocatable": [],
        "localStorageCapacityIsolation": True, "serializeImagePulls": False,
        "resolvConf": "",  # no DNS: the network rule allows no resolver
        "oomScoreAdj": 0,  # lowering it needs CAP_SYS_RESOURCE
        "kubeAPIQPS": 50, "kubeAPIBurst": 100,
        "nodeStatusReportFrequency": "10s",
        # Kubernetes 1.36 syncs a crash-looping pod again only when its back-off ends (or at
        # this resync), so its `CrashLoopBackOff` waiting reason shows only during a resync
        # within the back-off: 10s (not 1m) makes it show from the second crash on.
        "syncFrequency": "10s",
    }


def _write_configs(p: Paths) -> None:
    c = p.containers
    for d in (c, c / "cni-conf", c / "cni-ipam", c / "pod-logs", c / "kubelet-root"):
        d.mkdir(parents=True, exist_ok=True)
    pki.ensure_kubelet(p.pki, CONTAINER_NODE_NAME, netns.NODE_IP)
    (c / "containerd.toml").write_text(_containerd_config(p))
    (c / "cni-conf" / "10-cvy-pods.conflist").write_text(json.dumps(_cni_config(p)))
    (c / "kubelet.yaml").write_text(yaml.safe_dump(_kubelet_config(p), sort_keys=False))
    user = {"client-certificate": str(p.pki / "kubelet-client.crt"),
            "client-key": str(p.pki / "kubelet-client.key")}
    (c / "kubelet.kubeconfig").write_text(
        pki.kubeconfig(f"https://{netns.SERVICE_IP}:443", p.pki / "ca.crt", user))


def egress_config(p: Paths) -> Path:
    """The API server's EgressSelectorConfiguration: the `cluster` network (kubelets,
    nodes, pods, services) through the bridge's CONNECT proxy."""
    path = p.containers / "egress-selector.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({
        "apiVersion": "apiserver.k8s.io/v1beta1", "kind": "EgressSelectorConfiguration",
        "egressSelections": [{"name": "cluster", "connection": {
            "proxyProtocol": "HTTPConnect",
            "transport": {"uds": {"udsName": str(p.bridge_socket)}}}}],
    }, sort_keys=False))
    return path


def apiserver_flags(p: Paths) -> list[str]:
    """The API server's flags for the container node (none when it is not enabled)."""
    if not enabled():
        return []
    pki.ensure_kubelet(p.pki, CONTAINER_NODE_NAME, netns.NODE_IP)
    k = p.pki
    return [f"--egress-selector-config-file={egress_config(p)}",
            f"--kubelet-client-certificate={k / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={k / 'apiserver-kubelet-client.key'}",
            f"--kubelet-certificate-authority={k / 'ca.crt'}",
            "--kubelet-preferred-address-types=InternalIP"]


# -- cgroups and mounts -----------------------------------------------------------------------
def _cgroup_dirs(p: Paths) -> list[Path]:
    name = cgroup_root(p).lstrip("/")
    return [d / name for d in sorted(_CGROUP_FS.iterdir()) if (d / name).is_dir()]


def _prepare_cgroups(p: Paths) -> None:
    """The kubelet's cgroupRoot in every hierarchy (it must exist; cpuset needs its cpus and
    mems set before anything can join it)."""
    name = cgroup_root(p).lstrip("/")
    for hierarchy in sorted(_CGROUP_FS.iterdir()):
        if not (hierarchy / "cgroup.procs").exists():
            continue
        target = hierarchy / name
        target.mkdir(exist_ok=True)
        for knob in ("cpuset.cpus", "cpuset.mems"):
            if (hierarchy / knob).exists() and not (target / knob).read_text().strip():
                (target / knob).write_text((hierarchy / knob).read_text())


def _cgroup_pids(p: Paths) -> set[int]:
    found: set[int] = set()
    for root in _cgroup_dirs(p):
        for procs_file in root.rglob("cgroup.procs"):
            with contextlib.suppress(OSError):
                found.update(int(x) for x in procs_file.read_text().split())
    return found


def _remove_cgroups(p: Paths) -> None:
    for root in _cgroup_dirs(p):
        inner = sorted((d for d in root.rglob("*") if d.is_dir()), key=lambda d: len(d.parts),
                       reverse=True)
        for d in [*inner, root]:
            with contextlib.suppress(FileNotFoundError):
                d.rmdir()


def mounts_under(root: Path) -> list[str]:
    """Mount points under `root` (from /proc/self/mountinfo), deepest first."""
    prefix = str(root) + "/"
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point.startswith(prefix) or point == str(root):
            points.append(point)
    return sorted(set(points), key=lambda m: m.count("/"), reverse=True)


def _unmount_all(p: Paths) -> None:
    kubelet_root = p.containers / "kubelet-root"
    if str(kubelet_root) in mounts_under(p.containers):
        subprocess.run(["umount", "-R", str(kubelet_root)], check=False, capture_output=True)
    for point in mounts_under(p.containers):
        if subprocess.run(["umount", point], check=False, capture_output=True).returncode:
            subprocess.run(["umount", "-l", point], check=False, capture_output=True)


# -- images -----------------------------------------------------------------------------------
def ctr(p: Paths, *args: str, check: bool = True) -> str:
    out = subprocess.run(["ctr", "-a", str(socket_path(p)), "-n", NAMESPACE, *args],
                         check=False, capture_output=True, text=True, timeout=300)
    if check and out.returncode:
        raise RuntimeError(f"ctr {' '.join(args)} failed: {out.stderr.strip()}")
    return out.stdout


def oci_image(rootfs: Path, ref: str, out: Path, *, entrypoint: list[str] | None = None,
              cmd: list[str] | None = None, user: str = "65534:65534") -> Path:
    """An OCI image tar of `rootfs` (one layer, FROM scratch) named `ref`, built with umoci;
    `ctr images import` takes its name from the index's io.containerd.image.name."""
    tag = ref.rsplit(":", 1)[1]
    with tempfile.TemporaryDirectory(dir=out.parent) as work:
        layout = Path(work) / "oci"
        image = f"{layout}:{tag}"
        steps = [["umoci", "init", "--layout", str(layout)], ["umoci", "new", "--image", image],
                 ["umoci", "insert", "--image", image, str(rootfs), "/"]]
        config = ["umoci", "config", "--image", image, f"--config.user={user}"]
        config += [f"--config.entrypoint={e}" for e in entrypoint or []]
        config += [f"--config.cmd={c}" for c in cmd or []]
        for argv in [*steps, config]:
            subprocess.run(argv, check=True, capture_output=True)
        index = json.loads((layout / "index.json").read_text())
        for manifest in index["manifests"]:
            manifest.setdefault("annotations", {})["io.containerd.image.name"] = ref
        (layout / "index.json").write_text(json.dumps(index))
        subprocess.run(["tar", "-C", str(layout), "-cf", f"{out}.tmp", "."], check=True)
        os.replace(f"{out}.tmp", out)
    return out


def pause_image(bin_dir: Path) -> Path:
    """The pod sandbox's image (the static pause program, as uid 65535), cached by the
    binary's build (beside it)."""
    out = bin_dir.parent / "pause-image.tar"
    if out.exists() and out.stat().st_mtime >= (bin_dir / "pause").stat().st_mtime:
        return out
    with tempfile.TemporaryDirectory(dir=bin_dir.parent) as rootfs:
        shutil.copy2(bin_dir / "pause", Path(rootfs) / "pause")
        return oci_image(Path(rootfs), PAUSE_IMAGE, out, entrypoint=["/pause"],
                         user="65535:65535")


def images_dir() -> Path:
    """Where `up` finds image tars to import (docker-archive or OCI, refs inside)."""
    return cache_dir() / "images"


def import_images(p: Paths, tars: list[Path], force: bool = False,
                  strict: bool = True) -> list[Path]:
    """`ctr images import` each tar into the CRI's namespace; a tar imported before (same
    path, size and mtime, recorded in the state dir) is skipped. Returns those imported.
    Not `strict`: a tar that fails (half written by a build, say) is reported and skipped."""
    record_file = p.containers / "imported.json"
    record: dict[str, list[float]] = (json.loads(record_file.read_text())
                                      if record_file.exists() else {})
    done = []
    for given in tars:
        tar = given.resolve()
        stat = tar.stat()
        key = [stat.st_size, stat.st_mtime]
        if not force and record.get(str(tar)) == key:
            continue
        try:
            ctr(p, "images", "import", str(tar))
        except RuntimeError as error:
            if strict:
                raise
            print(f"Skipped the image tar {tar}: {error}", file=sys.stderr)
            continue
        record[str(tar)] = key
        record_file.write_text(json.dumps(record))
        done.append(tar)
    return done


# -- start and stop ---------------------------------------------------------------------------
def _netns_argv(p: Paths, argv: list[str]) -> list[str]:
    return ["nsenter", f"--net={netns.path(p.root)}", *argv]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "hack")
    return env


def start_part(p: Paths, ports: Ports, name: str, bin_dir: Path) -> int:
    """Start one part (the netns must exist: `start` makes it); idempotent."""
    if name == BRIDGE:
        return procs.start(BRIDGE, [sys.executable, "-m", "testbed.bridge"], pids=p.pids,
                           logs=p.logs, state=p.root, env=_env())
    if name == CONTAINERD:
        return procs.start(CONTAINERD, _netns_argv(p, [
            "containerd", f"--config={p.containers / 'containerd.toml'}", "--log-level=warn"]),
            pids=p.pids, logs=p.logs, state=p.root)
    _prepare_cgroups(p)
    return procs.start(KUBELET, _netns_argv(p, [
        str(bin_dir / "kubelet"), f"--config={p.containers / 'kubelet.yaml'}",
        f"--kubeconfig={p.containers / 'kubelet.kubeconfig'}",
        f"--root-dir={p.containers / 'kubelet-root'}",
        f"--hostname-override={CONTAINER_NODE_NAME}", f"--node-ip={netns.NODE_IP}",
        f"--node-labels={TAINT_KEY}={TAINT_VALUE},conveyor.dev/testbed=true", "--v=1"]),
        pids=p.pids, logs=p.logs, state=p.root)


def serving(p: Paths, name: str) -> bool:
    """Whether a part answers: the bridge's socket, containerd's `ctr version`, the
    kubelet's healthz (inside the netns)."""
    if procs.running_pid(p.pids, name) is None:
        return False
    if name == BRIDGE:
        return p.bridge_socket.exists()
    if name == CONTAINERD:
        return subprocess.run(["ctr", "-a", str(socket_path(p)), "version"], check=False,
                              capture_output=True, timeout=10).returncode == 0
    with netns.entered(netns.path(p.root)):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with sock:
        sock.settimeout(2)
        sock.connect(("127.0.0.1", 10248))
        sock.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    return answer.startswith(b"HTTP/1.") and b" 200 " in answer.split(b"\r\n", 1)[0]


def wait_part(p: Paths, name: str, timeout: float = 60) -> None:
    def check() -> bool:
        if procs.running_pid(p.pids, name) is None:
            raise RuntimeError(f"{name} exited; see {p.logs / (name + '.log')}")
        return serving(p, name)

    procs.wait_until(check, timeout, name, interval=0.2)


def grant_apiserver(rest: Rest) -> None:
    """Let the API server's kubelet client (its certificate's user) use the kubelet API."""
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": "conveyor-testbed:apiserver-kubelet-client"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                           "name": "system:kubelet-api-admin"},
               "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                             "name": "kube-apiserver-kubelet-client"}]}
    try:
        rest.request("POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", binding)
    except ApiError as error:
        if error.status != 409:
            raise


def start(p: Paths, ports: Ports, bin_dir: Path, rest: Rest) -> None:
    """Make the netns (after cleaning what a crashed run left) and start the bridge,
    containerd (then import the images) and the kubelet; a running node is left as it is."""
    if procs.running_pid(p.pids, CONTAINERD) is None or not netns.exists(p.root):
        for name in reversed(PARTS):
            procs.stop(p.pids, name, grace=10)
        _clean(p)
        netns.create(p.root)
    _write_configs(p)
    grant_apiserver(rest)
    for name in PARTS:
        if name == KUBELET:
            import_images(p, [pause_image(bin_dir)])
            import_images(p, sorted(images_dir().glob("*.tar")), strict=False)
        start_part(p, ports, name, bin_dir)
        wait_part(p, name)


def wait_ready(p: Paths, rest: Rest, timeout: float = 90) -> None:
    def ready() -> bool:
        if procs.running_pid(p.pids, KUBELET) is None:
            raise RuntimeError(f"the kubelet exited; see {p.logs / 'kubelet.log'}")
        node = rest.get(f"/api/v1/nodes/{CONTAINER_NODE_NAME}")
        return any(c["type"] == "Ready" and c["status"] == "True"
                   for c in node.get("status", {}).get("conditions", []))

    procs.wait_until(ready, timeout, f"node {CONTAINER_NODE_NAME}", interval=0.5)


def _kill_containers(p: Paths) -> None:
    """SIGKILL every container of the node, then delete its tasks (so the shims exit)."""
    if procs.running_pid(p.pids, CONTAINERD) is not None:
        tasks = ctr(p, "tasks", "ls", "-q", check=False).split()
        for task in tasks:
            ctr(p, "tasks", "kill", "-a", "-s", "SIGKILL", task, check=False)
    for pid in _cgroup_pids(p):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    procs.wait_until(lambda: not _cgroup_pids(p), 20, "the container node's containers to die",
                     interval=0.1)
    if procs.running_pid(p.pids, CONTAINERD) is not None:
        for task in ctr(p, "tasks", "ls", "-q", check=False).split():
            ctr(p, "tasks", "delete", task, check=False)


def _clean(p: Paths) -> None:
    """Whatever the node left: its containers, shims, mounts, cgroups and netns."""
    if p.containers.exists():
        for pid in _cgroup_pids(p):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shims = [pid for pid in procs.marked_processes(p.root)
                 if Path(f"/proc/{pid}/exe").resolve().name.startswith("containerd-shim")]
        procs.terminate(shims, grace=5)
        _unmount_all(p)
        shutil.rmtree(p.containers / "cni-ipam", ignore_errors=True)
        shutil.rmtree(p.containers / "containerd-state", ignore_errors=True)
    deadline = time.monotonic() + 10
    while _cgroup_dirs(p) and time.monotonic() < deadline:
        _remove_cgroups(p)
        if _cgroup_dirs(p):
            time.sleep(0.1)
    netns.delete(p.root)


def stop(p: Paths) -> None:
    """Stop the kubelet, kill its containers, stop containerd and the bridge, then remove
    every mount, cgroup and the netns the node had."""
    procs.stop(p.pids, KUBELET, grace=15)
    with contextlib.suppress(Exception):
        _kill_containers(p)
    procs.stop(p.pids, CONTAINERD, grace=15)
    procs.stop(p.pids, BRIDGE, grace=5)
    _clean(p)
