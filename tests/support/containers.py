"""Tests on the test bed's container node (a real kubelet with containerd and runc): a
namespace whose pods all go there, the endpoints its pods reach the test bed's services at,
and a tiny image to run.

The process node stays every other test's node; only a namespace made by
`container_namespace` sends its pods to the container node (the API server's PodNodeSelector
and PodTolerationRestriction plugins read its annotations), so the product's manifests need
no change. Without the container node (containerd, runc or the CNI plugins missing) the
fixtures skip, or FAIL when CONVEYOR_REQUIRE_CONTAINERS=1 (CI sets it).
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client

from testbed import containers, netns, procs, rabbitmq
from testbed.layout import CONTAINER_NODE_NAME, REPO, cache_dir, paths, ports

BUSYBOX_IMAGE = "conveyor.local/busybox:test"
"""A FROM scratch image of Debian's busybox-static (/bin/busybox and its applets), uid 65534."""


@dataclass(frozen=True)
class ContainerEndpoints:
    """The test bed's services as a container node pod reaches them (through the bridge)."""

    node: str
    amqp_url: str
    """amqp:// at the node IP, on the session's vhost."""
    amqps_url: str
    s3_endpoint: str
    kafka_bootstrap: str
    api_server: str
    """https://10.0.0.1:443, the `kubernetes` Service (what in-cluster config finds)."""
    node_ip: str = netns.NODE_IP


def require_container_node() -> None:
    """Skip without the container node, or fail when CONVEYOR_REQUIRE_CONTAINERS=1."""
    p = paths()
    why = None
    if os.environ.get("CONVEYOR_TEST_USE_KUBECONFIG") == "1":
        why = "the container node is the local test bed's"
    elif not containers.enabled():
        missing = containers.missing_tools()
        why = "the test bed has no container node: " + (
            f"missing {', '.join(missing)}" if missing else "CONVEYOR_TESTBED_CONTAINERS=0")
    elif procs.running_pid(p.pids, containers.KUBELET) is None:
        why = "the container node's kubelet is not running (`make testbed-up`)"
    if why is None:
        return
    if os.environ.get("CONVEYOR_REQUIRE_CONTAINERS") == "1":
        pytest.fail(f"CONVEYOR_REQUIRE_CONTAINERS=1 but {why}", pytrace=False)
    pytest.skip(why)


def endpoints(amqp_url: str) -> ContainerEndpoints:
    """Endpoints for the vhost of `amqp_url` (the host's URL of the session's vhost)."""
    p, ports_ = paths(), ports()
    vhost_path = amqp_url.rsplit("/", 1)[1]
    amqps = rabbitmq.amqps_url(p, ports_).rsplit("/", 1)[0] + "/" + vhost_path
    env = containers.env_vars(p, ports_, amqp_url, amqps)
    return ContainerEndpoints(
        node=CONTAINER_NODE_NAME, amqp_url=env["CONVEYOR_CONTAINER_AMQP_URL"],
        amqps_url=env["CONVEYOR_CONTAINER_AMQPS_URL"],
        s3_endpoint=env["CONVEYOR_CONTAINER_S3_ENDPOINT"],
        kafka_bootstrap=env["CONVEYOR_CONTAINER_KAFKA_BOOTSTRAP_SERVERS"],
        api_server=env["CONVEYOR_CONTAINER_API_SERVER"])


def container_namespace(api_client, name: str) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """Create namespace `name` whose pods all go to the container node; delete it after."""
    core = client.CoreV1Api(api_client)
    core.create_namespace({"metadata": {
        "name": name, "labels": {"conveyor.dev/test": "true"},
        "annotations": containers.namespace_annotations()}})
    yield name
    core.delete_namespace(name, propagation_policy="Background")


def _incluster(out: Path) -> None:
    """Build incluster/main.go (a static Go program) to `out`."""
    source = Path(__file__).parent / "incluster"
    env = dict(os.environ, CGO_ENABLED="0", GOTOOLCHAIN="local", GOFLAGS="-buildvcs=false",
               GO111MODULE="off")
    subprocess.run(["go", "build", "-trimpath", "-ldflags=-s -w", "-o", str(out),
                    str(source / "main.go")], check=True, env=env, capture_output=True)


def busybox_image() -> str:
    """Build (once, cached in ~/.cache/conveyor/testbed/) and import the test image:
    Debian's busybox-static and incluster (incluster/main.go), FROM scratch, uid 65534."""
    out = cache_dir() / "testbed" / "busybox-image.tar"
    busybox = Path(shutil.which("busybox") or "/bin/busybox")
    inputs = [busybox, Path(__file__), Path(__file__).parent / "incluster" / "main.go"]
    if not out.exists() or out.stat().st_mtime < max(i.stat().st_mtime for i in inputs):
        out.parent.mkdir(parents=True, exist_ok=True)
        work = out.parent / "busybox-rootfs"
        shutil.rmtree(work, ignore_errors=True)
        (work / "bin").mkdir(parents=True)
        shutil.copy2(busybox, work / "bin" / "busybox")
        applets = subprocess.run([str(busybox), "--list"], check=True, capture_output=True,
                                 text=True).stdout.split()
        for applet in applets:
            if applet != "busybox":
                (work / "bin" / applet).symlink_to("busybox")
        _incluster(work / "bin" / "incluster")
        for d in ("etc", "tmp", "proc", "sys", "dev"):
            (work / d).mkdir()
        (work / "etc" / "passwd").write_text("root:x:0:0::/:/bin/sh\n"
                                             "nobody:x:65534:65534::/:/bin/sh\n")
        containers.oci_image(work, BUSYBOX_IMAGE, out, cmd=["/bin/sh"])
        shutil.rmtree(work)
    containers.import_images(paths(), [out])
    return BUSYBOX_IMAGE


PRODUCT_IMAGES = {"operator": "conveyor-operator", "worker": "conveyor-worker",
                  "examples": "conveyor-examples"}
"""The images `make images` builds, by role: each tar is `<name>.tar`, tagged `<name>:<version>`."""


def product_images() -> dict[str, str]:
    """Conveyor's own images (from `make images`) imported into the container node; the image
    reference of each role. Fails, never skips, when they have not been built: a missing
    image is the bug these tests are for."""
    script = REPO / "hack" / "build-images.sh"
    folder = Path(subprocess.run([str(script), "--print-dir"], check=True, capture_output=True,
                                 text=True).stdout.strip())
    tars = [folder / f"{name}.tar" for name in PRODUCT_IMAGES.values()]
    missing = [t.name for t in tars if not t.exists()]
    if missing:
        pytest.fail(f"the images are not built ({', '.join(missing)} missing in {folder}): "
                    "run `make images`", pytrace=False)
    containers.import_images(paths(), tars)
    version = importlib.metadata.version("conveyor")
    return {role: f"{name}:{version}" for role, name in PRODUCT_IMAGES.items()}
