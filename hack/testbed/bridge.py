"""The container node's bridge: how its pods reach the host's services, and how the API server
(on the host) reaches its kubelet, with all traffic on loopback or inside the test bed's netns.

    python -m testbed.bridge    (PYTHONPATH=hack; started by `python -m testbed up`)

- Into the host: listening sockets made INSIDE the netns (netns.entered), accepted in the host's
  namespace and forwarded to 127.0.0.1 on the host. RabbitMQ (amqp, amqps), the object store
  (http, https) and Kafka (plain, TLS, and the `kafka_pods` listener that advertises the node
  IP, for pods with an IP of their own) listen on 0.0.0.0 of the netns at their host ports, so
  a pod reaches them at `netns.NODE_IP` (and a hostNetwork pod at 127.0.0.1 too); the API
  server listens at `netns.SERVICE_IP`:443, the `kubernetes` Service.
- Out of the host: an HTTP CONNECT proxy on a Unix socket (`Paths.bridge_socket`), the API
  server's egress selector for the `cluster` network (controlplane.py): it dials the target
  from inside the netns (the kubelet at NODE_IP:10250 for logs and exec), or on the host's
  loopback when the target is a 127/8 address (the process node, webhooks on the host).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import signal
import socket

from . import netns
from .layout import Paths, Ports, paths, ports

log = logging.getLogger("bridge")
BUFFER = 1 << 16


def routes(p: Ports) -> list[tuple[str, int, int]]:
    """(address in the netns, port there, host port on 127.0.0.1) of every forward."""
    same = [p.amqp, p.amqps, p.s3, p.s3_tls, p.kafka, p.kafka_tls, p.kafka_pods]
    return [("0.0.0.0", port, port) for port in same] + [(netns.SERVICE_IP, 443, p.apiserver)]


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(BUFFER):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()


async def _relay(a: tuple[asyncio.StreamReader, asyncio.StreamWriter],
                 b: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
    try:
        await asyncio.gather(_pipe(a[0], b[1]), _pipe(b[0], a[1]))
    finally:
        for w in (a[1], b[1]):
            w.close()
            with contextlib.suppress(Exception):
                await w.wait_closed()


class Bridge:
    def __init__(self, state: Paths, ports_: Ports) -> None:
        self.paths = state
        self.ports = ports_
        self.ns = netns.path(state.root)

    def _listen_in_netns(self, host: str, port: int) -> socket.socket:
        with netns.entered(self.ns):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
        return sock

    async def _dial(self, host: str, port: int) -> tuple[asyncio.StreamReader,
                                                          asyncio.StreamWriter]:
        loopback = ipaddress.ip_address(host).is_loopback
        if loopback:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        else:
            with netns.entered(self.ns):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (host, port)),
                                   10)
        except BaseException:
            sock.close()
            raise
        return await asyncio.open_connection(sock=sock)

    def _forward(self, target: int):  # type: ignore[no-untyped-def]
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                upstream = await asyncio.open_connection("127.0.0.1", target)
            except OSError as error:
                log.warning("Forward to 127.0.0.1:%d failed: %s", target, error)
                writer.close()
                return
            await _relay((reader, writer), upstream)

        return handle

    async def _connect(self, reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter) -> None:
        """One HTTP CONNECT: `CONNECT host:port HTTP/1.1`, headers, then raw bytes."""
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            method, authority, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
            host, _, port = authority.rpartition(":")
            if method != "CONNECT":
                raise ValueError(f"not a CONNECT: {method}")
            upstream = await self._dial(host.strip("[]"), int(port))
        except Exception as error:  # a bad request or an unreachable target
            log.warning("CONNECT failed: %s", error)
            with contextlib.suppress(Exception):
                writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
            writer.close()
            return
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        await _relay((reader, writer), upstream)

    async def run(self, stopping: asyncio.Event) -> None:
        servers = []
        for host, port, target in routes(self.ports):
            sock = self._listen_in_netns(host, port)
            servers.append(await asyncio.start_server(self._forward(target), sock=sock))
            log.info("Forwarding netns %s:%d to 127.0.0.1:%d", host, port, target)
        uds = self.paths.bridge_socket
        uds.unlink(missing_ok=True)
        servers.append(await asyncio.start_unix_server(self._connect, path=str(uds)))
        uds.chmod(0o600)
        log.info("CONNECT proxy on %s", uds)
        await stopping.wait()
        for server in servers:
            server.close()
        uds.unlink(missing_ok=True)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    bridge = Bridge(paths(), ports())

    async def run() -> None:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        await bridge.run(stopping)

    asyncio.run(run())
    os._exit(0)  # relays still open are cut, as the netns goes away with the node


if __name__ == "__main__":
    main()
