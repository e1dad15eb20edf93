"""`/healthz` and `/metrics` on one port, served on the operator's loop (aiohttp, as kopf).

Healthy means: the API server answered within `API_GRACE` seconds (a probe lists Workflows
every `PROBE_SECONDS`; kopf's watches use the same server and credentials) and every broker
link is connected or has been down for less than `BROKER_GRACE` seconds (it reconnects on its
own; longer means the broker is gone). A link that failed on TLS is unhealthy at once: no
waiting mends a CA or a name that does not match, so the answer says which and where.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiohttp import web

from conveyor.broker.errors import TLSError
from conveyor.kube import KubeError
from conveyor.operator.metrics import Metrics
from conveyor.operator.seams import BrokerLink, KubeApi

log = logging.getLogger("conveyor.operator.health")

PROBE_SECONDS = 10.0
API_GRACE = 45.0
BROKER_GRACE = 30.0


class _StandbyHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        # A standby has no metrics yet: an empty exposition is valid for Prometheus.
        body = b"standby: waiting for the leader lease\n" if self.path == "/healthz" else b""
        self.send_response(200 if self.path in ("/healthz", "/metrics") else 404)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # probes every few seconds would flood the log


def standby_server(address: str, port: int) -> ThreadingHTTPServer:
    """A healthy `/healthz` while the replica waits for the leader Lease, so liveness
    probes do not restart standbys; shut it down before the operator serves the port."""
    server = ThreadingHTTPServer((address, port), _StandbyHandler)
    threading.Thread(target=server.serve_forever, name="standby-health", daemon=True).start()
    return server


@dataclass
class Health:
    """What `/healthz` answers, from an API probe and the broker links' states."""

    kube: KubeApi
    metrics: Metrics
    links: Sequence[tuple[str, BrokerLink]]
    namespace: str | None = None  # where the probe lists Workflows; None: cluster-wide
    api_ok_at: float = field(default_factory=time.monotonic)
    down_since: dict[str, float] = field(default_factory=dict)

    def problems(self) -> list[str]:
        now = time.monotonic()
        found = []
        if now - self.api_ok_at > API_GRACE:
            found.append(f"API server unreachable for {now - self.api_ok_at:.0f}s")
        for name, link in self.links:
            if link.connected:
                self.down_since.pop(name, None)
                continue
            since = self.down_since.setdefault(name, now)
            failure = link.failure
            if isinstance(failure, TLSError):
                found.append(f"broker link {name} cannot connect ({failure.cause}): {failure}")
            elif now - since > BROKER_GRACE:
                why = f": {failure}" if failure is not None else ""
                found.append(f"broker link {name} down for {now - since:.0f}s{why}")
        return found

    async def probe(self) -> None:
        while True:
            try:
                await self.kube.list_custom("workflows", self.namespace, 1)
                self.api_ok_at = time.monotonic()
            except KubeError as error:
                log.warning("API probe failed error=%s", error)
            await asyncio.sleep(PROBE_SECONDS)

    async def _healthz(self, _request: web.Request) -> web.Response:
        problems = self.problems()
        if problems:
            return web.Response(status=503, text="\n".join(problems) + "\n")
        return web.Response(text="ok\n")

    async def _metrics(self, _request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.render(),
                            headers={"Content-Type": "text/plain; version=0.0.4"})

    async def serve(self, address: str, port: int) -> web.AppRunner:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, address, port).start()
        log.info("Serving /healthz and /metrics address=%s port=%d", address, port)
        return runner
