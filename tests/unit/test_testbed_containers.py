"""The container node's pure parts: its configuration, the namespace annotations that send
pods there, the certificates carrying its addresses, and the bridge's CONNECT proxy (to a
loopback target, which it dials on the host: no namespace needed)."""

from __future__ import annotations

import asyncio
import ipaddress
import json
from pathlib import Path

import pytest
from cryptography import x509

from testbed import bridge, containers, layout, netns, pki
from testbed.layout import Paths


def _sans(cert: Path) -> list[str]:
    c = x509.load_pem_x509_certificate(cert.read_bytes())
    ext = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [str(ip) for ip in ext.get_values_for_type(x509.IPAddress)]


def test_the_namespace_annotations_select_and_tolerate_the_container_node() -> None:
    notes = containers.namespace_annotations()
    assert notes["scheduler.alpha.kubernetes.io/node-selector"] == "conveyor.dev/runtime=containerd"
    assert json.loads(notes["scheduler.alpha.kubernetes.io/defaultTolerations"]) == [
        {"key": "conveyor.dev/runtime", "operator": "Exists", "effect": "NoSchedule"}]


def test_two_state_directories_never_share_cgroups_or_a_netns(tmp_path: Path) -> None:
    a, b = Paths(tmp_path / "one"), Paths(tmp_path / "two-other")
    configs = [containers._kubelet_config(p) for p in (a, b)]
    assert configs[0]["cgroupRoot"] != configs[1]["cgroupRoot"]
    assert netns.name(a.root) != netns.name(b.root)
    assert configs[0]["cgroupRoot"] == "/conveyor-" + netns.name(a.root).removeprefix("cvy-")


def test_the_kubelet_authenticates_callers_and_keeps_its_images(tmp_path: Path) -> None:
    config = containers._kubelet_config(Paths(tmp_path))
    assert config["authentication"]["anonymous"] == {"enabled": False}
    assert config["authentication"]["x509"]["clientCAFile"].endswith("ca.crt")
    assert config["authorization"] == {"mode": "Webhook"}
    assert config["imageGCHighThresholdPercent"] == 100
    assert config["address"] == netns.NODE_IP
    assert config["registerWithTaints"] == [
        {"key": "conveyor.dev/runtime", "value": "containerd", "effect": "NoSchedule"}]
    cni = containers._cni_config(Paths(tmp_path))["plugins"][0]
    assert cni["type"] == "ptp" and cni["ipam"]["ranges"] == [[{"subnet": netns.POD_SUBNET}]]
    assert "restrict_oom_score_adj = true" in containers._containerd_config(Paths(tmp_path))


def test_the_service_certificates_carry_the_node_ip(tmp_path: Path) -> None:
    pki.ensure_store(tmp_path)
    pki.ensure_kafka(tmp_path)
    for cert in ("rabbitmq.crt", "s3server.crt", "kafka.crt"):
        assert _sans(tmp_path / cert) == ["127.0.0.1", netns.NODE_IP], cert


def test_certificates_from_before_the_container_node_are_made_again(tmp_path: Path) -> None:
    pki.ensure_store(tmp_path)
    for marker in ("amqp-done", "s3-done"):
        (tmp_path / marker).write_text("ok\n")  # as an older test bed wrote it
    old_ca = (tmp_path / "amqp-ca.crt").read_bytes()
    pki.ensure_store(tmp_path)
    assert (tmp_path / "amqp-ca.crt").read_bytes() != old_ca
    ca = x509.load_pem_x509_certificate((tmp_path / "amqp-ca.crt").read_bytes())
    store = x509.load_pem_x509_certificate((tmp_path / "s3server.crt").read_bytes())
    assert store.issuer == ca.subject


def test_the_kubelet_certificates(tmp_path: Path) -> None:
    pki.ensure(tmp_path)
    pki.ensure_kubelet(tmp_path, "n1", netns.NODE_IP)
    client = x509.load_pem_x509_certificate((tmp_path / "kubelet-client.crt").read_bytes())
    assert client.subject.rfc4514_string() == "O=system:nodes,CN=system:node:n1"
    assert _sans(tmp_path / "kubelet-serving.crt") == [netns.NODE_IP]


def test_the_bridge_forwards_every_service_and_the_api_server(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_TESTBED_DIR", str(tmp_path))
    ports = layout.ports()
    routes = bridge.routes(ports)
    assert (netns.SERVICE_IP, 443, ports.apiserver) in routes
    assert {(h, p) for h, p, t in routes if p == t} == {
        ("0.0.0.0", p) for p in (ports.amqp, ports.amqps, ports.s3, ports.s3_tls, ports.kafka,
                                 ports.kafka_tls, ports.kafka_pods)}
    assert all(ipaddress.ip_address(h) in (ipaddress.ip_address("0.0.0.0"),
                                           ipaddress.ip_address(netns.SERVICE_IP))
               for h, _, _ in routes)


def test_the_connect_proxy_relays_to_a_loopback_target(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_TESTBED_DIR", str(tmp_path))
    p = layout.paths()

    async def scenario() -> tuple[bytes, bytes]:
        async def echo(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            w.write(b"echo:" + await r.readexactly(4))
            await w.drain()
            w.close()

        target = await asyncio.start_server(echo, "127.0.0.1", 0)
        port = target.sockets[0].getsockname()[1]
        proxy = await asyncio.start_unix_server(bridge.Bridge(p, layout.ports())._connect,
                                                path=str(p.bridge_socket))
        r, w = await asyncio.open_unix_connection(str(p.bridge_socket))
        w.write(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: x\r\n\r\nping".encode())
        await w.drain()
        head = await r.readuntil(b"\r\n\r\n")
        body = await asyncio.wait_for(r.read(), 5)
        w.close()
        r2, w2 = await asyncio.open_unix_connection(str(p.bridge_socket))
        w2.write(b"GET / HTTP/1.1\r\n\r\n")
        refused = await asyncio.wait_for(r2.read(), 5)
        for server in (proxy, target):
            server.close()
        return head + body, refused

    answer, refused = asyncio.run(scenario())
    assert answer == b"HTTP/1.1 200 Connection established\r\n\r\necho:ping"
    assert refused.startswith(b"HTTP/1.1 502")
