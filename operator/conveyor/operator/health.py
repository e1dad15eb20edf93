"""`/livez`, `/readyz`, `/healthz` and `/metrics` on one port, served on the operator's loop
(aiohttp, as kopf).

Two questions, two answers (DESIGN.md §1, docs/operating.md "Probes"):

- **Live** (`/livez`): the operator is not stuck. Its asyncio loop answers the request at all
  (a blocked loop answers nothing, and the kubelet's timeout says so), and every background
  loop that beats (the API probe, the pool round) beat within its `stuck_after`. A loop that
  waits on the API server or the broker is not stuck: while either is unreachable, and for
  `stuck_after` after they are back, its silence does not count. So an outage of the API
  server or the broker never fails liveness, and never restarts the operator in a loop.
- **Ready** (`/readyz`): the operator can do its work. The API server answered within
  `API_GRACE` seconds (a probe lists Workflows every `PROBE_SECONDS`; kopf's watches use the
  same server and credentials), every broker link is connected or has been down for less than
  `BROKER_GRACE` seconds (it reconnects on its own; longer means the broker is gone), and the
  start (the install's queues declared) is done. A link that failed on TLS is unready at once:
  no waiting mends a CA or a name that does not match, so the answer says which and where.

`/healthz` answers both at once (503 if either fails), as it did before the split.
The decisions are the pure functions `unready` and `stuck`; `Health` feeds them the clock.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiohttp import web

from conveyor.broker.errors import TLSError
from conveyor.kube import KubeError
from conveyor.operator.metrics import Metrics
from conveyor.operator.seams import BrokerLink, KubeApi

log = logging.getLogger("conveyor.operator.health")

PROBE_SECONDS = 10.0
PROBE_TIMEOUT = 10.0
"""An API probe unanswered for this long counts as failed, so the probe loop beats on."""
API_GRACE = 45.0
BROKER_GRACE = 30.0
PROBE_STUCK_AFTER = 120.0
"""The API probe's loop beats every PROBE_SECONDS whatever the API server does: silent
this long, the asyncio loop no longer runs its tasks."""
POOLS_STUCK_AFTER = 300.0
"""The pool round beats every `pool_interval` (2 s) unless a call hangs."""
HEALTH_PATHS = ("/healthz", "/livez", "/readyz")


@dataclass(frozen=True)
class LinkState:
    """What readiness needs to know of one broker link."""

    name: str
    connected: bool
    down_since: float | None
    """Monotonic time it was first seen down in this outage; None while connected."""
    failure: Exception | None


@dataclass(frozen=True)
class Beat:
    """The last beat of a background loop, and how long its silence may last."""

    at: float
    stuck_after: float
    waits_on_dependencies: bool
    """True: silence while the API server or broker is unreachable does not count."""


def unready(now: float, *, api_ok_at: float, links: Sequence[LinkState],
            starting: str | None = None) -> list[str]:
    """Why the operator cannot do its work now; empty: ready."""
    found = [] if starting is None else [starting]
    if now - api_ok_at > API_GRACE:
        found.append(f"API server unreachable for {now - api_ok_at:.0f}s")
    for link in links:
        if link.connected:
            continue
        since = now if link.down_since is None else link.down_since
        if isinstance(link.failure, TLSError):
            found.append(f"broker link {link.name} cannot connect ({link.failure.cause}): "
                         f"{link.failure}")
        elif now - since > BROKER_GRACE:
            why = f": {link.failure}" if link.failure is not None else ""
            found.append(f"broker link {link.name} down for {now - since:.0f}s{why}")
    return found


def stuck(now: float, beats: Mapping[str, Beat], *,
          dependencies_down_at: float | None) -> list[str]:
    """Which background loops are stuck: silent past their `stuck_after`, not counting the
    time the API server or broker was unreachable (`dependencies_down_at`: when they were
    last seen so; None: never) for loops that wait on them. Empty: live."""
    found = []
    for name, beat in sorted(beats.items()):
        since = beat.at
        if beat.waits_on_dependencies and dependencies_down_at is not None:
            since = max(since, dependencies_down_at)
        if now - since > beat.stuck_after:
            found.append(f"background loop {name} has not run for {now - beat.at:.0f}s")
    return found


class _StandbyHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        # A standby is live and ready (so a PodDisruptionBudget counts it, and a drain may
        # move it); it has no metrics yet: an empty exposition is valid for Prometheus.
        health = self.path in HEALTH_PATHS
        body = b"standby: waiting for the leader lease\n" if health else b""
        self.send_response(200 if health or self.path == "/metrics" else 404)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # probes every few seconds would flood the log


def standby_server(address: str, port: int) -> ThreadingHTTPServer:
    """Healthy `/livez`, `/readyz` and `/healthz` while the replica waits for the leader
    Lease, so probes do not restart standbys; shut it down before the operator serves the
    port."""
    server = ThreadingHTTPServer((address, port), _StandbyHandler)
    threading.Thread(target=server.serve_forever, name="standby-health", daemon=True).start()
    return server


@dataclass
class Health:
    """What the probes answer, from an API probe, the broker links and the loops' beats."""

    kube: KubeApi
    metrics: Metrics
    links: Sequence[tuple[str, BrokerLink]]
    namespace: str | None = None  # where the probe lists Workflows; None: cluster-wide
    api_ok_at: float = field(default_factory=time.monotonic)
    down_since: dict[str, float] = field(default_factory=dict)
    beats: dict[str, Beat] = field(default_factory=dict)
    dependencies_down_at: float | None = None
    starting: str | None = "starting: the install's queues are not declared yet"
    """A readiness problem until the runtime's start is done; None then."""

    def beat(self, name: str, *, stuck_after: float = POOLS_STUCK_AFTER,
             waits_on_dependencies: bool = True) -> None:
        """A background loop says it runs."""
        self.beats[name] = Beat(time.monotonic(), stuck_after, waits_on_dependencies)

    def _links(self, now: float) -> list[LinkState]:
        states = []
        for name, link in self.links:
            if link.connected:
                self.down_since.pop(name, None)
                states.append(LinkState(name, True, None, None))
            else:
                since = self.down_since.setdefault(name, now)
                states.append(LinkState(name, False, since, link.failure))
        return states

    def unready(self) -> list[str]:
        """Why `/readyz` fails; it also marks when the dependencies were last seen down."""
        now = time.monotonic()
        found = unready(now, api_ok_at=self.api_ok_at, links=self._links(now),
                        starting=self.starting)
        if any(not link.connected for _, link in self.links) or now - self.api_ok_at > (
                PROBE_SECONDS + PROBE_TIMEOUT):
            self.dependencies_down_at = now
        return found

    def stuck(self) -> list[str]:
        """Why `/livez` fails."""
        self.unready()  # brings dependencies_down_at up to date
        return stuck(time.monotonic(), self.beats,
                     dependencies_down_at=self.dependencies_down_at)

    def problems(self) -> list[str]:
        """Why `/healthz` fails: stuck or unready."""
        return [*self.stuck(), *self.unready()]

    async def probe(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self.kube.list_custom("workflows", self.namespace, 1),
                                       PROBE_TIMEOUT)
                self.api_ok_at = time.monotonic()
            except KubeError as error:
                log.warning("API probe failed error=%s", error)
            except TimeoutError:
                log.warning("API probe failed error=no answer in %.0fs", PROBE_TIMEOUT)
            self.unready()
            self.beat("api-probe", stuck_after=PROBE_STUCK_AFTER, waits_on_dependencies=False)
            await asyncio.sleep(PROBE_SECONDS)

    @staticmethod
    def _answer(problems: list[str]) -> web.Response:
        if problems:
            return web.Response(status=503, text="\n".join(problems) + "\n")
        return web.Response(text="ok\n")

    async def _livez(self, _request: web.Request) -> web.Response:
        return self._answer(self.stuck())

    async def _readyz(self, _request: web.Request) -> web.Response:
        return self._answer(self.unready())

    async def _healthz(self, _request: web.Request) -> web.Response:
        return self._answer(self.problems())

    async def _metrics(self, _request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.render(),
                            headers={"Content-Type": "text/plain; version=0.0.4"})

    async def serve(self, address: str, port: int) -> web.AppRunner:
        app = web.Application()
        app.router.add_get("/livez", self._livez)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, address, port).start()
        log.info("Serving /livez, /readyz, /healthz and /metrics address=%s port=%d",
                 address, port)
        return runner
