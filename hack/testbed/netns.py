"""The container node's network namespace, `cvy-<N>`: owned by the test bed, one per state dir.

Its `lo` carries the node's IP (`NODE_IP`, the kubelet refuses a loopback one) and the
`kubernetes` Service's ClusterIP (`SERVICE_IP`, the first address of the service range, in the
API server's certificate), so in-cluster clients reach the API server without kube-proxy. Pods
that are not hostNetwork get an address of `POD_SUBNET` each (CNI ptp + host-local). Nothing
in it routes anywhere else: traffic stays inside the namespace or goes through the bridge
(bridge.py) to the host's loopback.

`entered()` switches the calling thread into the namespace (libc setns through ctypes: Python
3.11 has no os.setns), so a socket made there lives in the namespace after the switch back.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

from .nodeagent import pod_network

NODE_IP = "10.254.0.1"
SERVICE_IP = "10.0.0.1"
POD_SUBNET = "10.254.1.0/24"
_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def name(state: Path) -> str:
    """`cvy-<N>`, N from the state directory as the process node's 127.N pod addresses."""
    return f"cvy-{pod_network(state)}"


def path(state: Path) -> Path:
    return Path("/run/netns") / name(state)


def exists(state: Path) -> bool:
    return path(state).exists()


def create(state: Path) -> None:
    """A fresh namespace (a stale one of a crashed run is deleted first) with its addresses."""
    delete(state)
    ns = name(state)
    for argv in (["ip", "netns", "add", ns],
                 ["ip", "-n", ns, "link", "set", "lo", "up"],
                 ["ip", "-n", ns, "addr", "add", f"{NODE_IP}/32", "dev", "lo"],
                 ["ip", "-n", ns, "addr", "add", f"{SERVICE_IP}/32", "dev", "lo"]):
        subprocess.run(argv, check=True, capture_output=True)


def delete(state: Path) -> None:
    if exists(state):
        subprocess.run(["ip", "netns", "del", name(state)], check=True, capture_output=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextlib.contextmanager
def entered(ns_path: Path) -> Iterator[None]:
    """Run the block with this thread in the namespace at `ns_path`; back to the thread's own
    namespace afterwards (also on an error)."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(ns_path, os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(target)
        os.close(own)
