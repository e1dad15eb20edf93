"""Leader election over a coordination.k8s.io Lease, the way client-go does it, so that two
operator replicas never act at once.

Why not kopf's peering: it pauses kopf's watch handlers only, while the operator also consumes
worker events, fires timers and scales pools on its own. So the whole process waits for the
Lease before it starts anything, renews it while it runs, and exits at once when it can no
longer renew it: a replica that may have lost leadership stops acting before another one
takes over (the Deployment restarts it as a standby).

Expiry is judged on the candidate's own clock: a holder is presumed gone when its record has
not changed for `duration` seconds as this process observed it, so clock skew between replicas
does not matter.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from conveyor.kube import Kube, KubeError

log = logging.getLogger("conveyor.operator.leader")


def _now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class LeaderElector:
    """Holds the operator's Lease so that one replica acts; see the module for how."""

    kube: Kube
    namespace: str
    name: str
    duration: float = 15.0
    renew_every: float = 5.0
    identity: str = field(default_factory=lambda: f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}")
    on_lost: Callable[[], None] = field(default=lambda: os._exit(70))
    _observed: tuple[str, float] | None = field(default=None, init=False)
    _releasing: bool = field(default=False, init=False)
    _last_renewed: float = field(default=0.0, init=False)

    def acquire(self, poll: float = 1.0) -> None:
        """Block until this process holds the Lease. An API server that does not answer
        (down, restarting, its etcd away) is waited out like a Lease another replica holds:
        raising would exit the process, and a pod's CrashLoopBackOff outlasts the outage."""
        announced = False
        while not self._try_answered():
            if not announced:
                log.info("Waiting for the leader lease lease=%s/%s identity=%s",
                         self.namespace, self.name, self.identity)
                announced = True
            time.sleep(poll)
        log.info("Leader lease acquired lease=%s/%s identity=%s", self.namespace, self.name,
                 self.identity)

    def keep(self) -> threading.Thread:
        """Renew the Lease in the background; call `on_lost` when it cannot."""
        self._last_renewed = time.monotonic()
        thread = threading.Thread(target=self._renew_loop, name="leader-lease", daemon=True)
        thread.start()
        threading.Thread(target=self._watchdog, name="leader-lease-watchdog",
                         daemon=True).start()
        return thread

    def _watchdog(self) -> None:
        """Call `on_lost` once the Lease has gone unrenewed too long, whatever the renewal is
        doing: a call to an API server that took the connection and does not answer (one
        starting up, or without its etcd) blocks with no timeout, and a standby takes over
        `duration` after the last renewal whether or not this process noticed."""
        budget = self.duration - self.renew_every
        while not self._releasing:
            late = time.monotonic() - self._last_renewed
            if late > budget:
                log.error("Leader lease not renewed for %.0fs; exiting", late)
                self.on_lost()
                return
            time.sleep(min(1.0, budget - late + 0.05))

    def release(self) -> None:
        """Give the Lease up on a clean shutdown, so a standby takes over at once instead
        of waiting for it to expire."""
        self._releasing = True
        try:
            lease = self.kube.get_lease(self.namespace, self.name)
            spec = (lease or {}).get("spec") or {}
            if lease is None or spec.get("holderIdentity") != self.identity:
                return
            self.kube.replace_lease(self.namespace, self.name,
                                    lease["metadata"]["resourceVersion"],
                                    {**spec, "holderIdentity": "", "leaseDurationSeconds": 1})
            log.info("Leader lease released lease=%s/%s", self.namespace, self.name)
        except KubeError as error:
            log.warning("Leader lease not released error=%s", error)

    def _spec(self, acquired: str | None = None) -> dict[str, Any]:
        now = _now_text()
        return {"holderIdentity": self.identity, "leaseDurationSeconds": int(self.duration),
                "acquireTime": acquired or now, "renewTime": now}

    def _try_answered(self) -> bool:
        try:
            return self._try()
        except KubeError as error:
            if not error.retryable:
                raise  # RBAC or a bad namespace: no amount of waiting helps
            log.warning("Leader lease not reachable; retrying lease=%s/%s error=%s",
                        self.namespace, self.name, error)
            return False

    def _try(self) -> bool:
        lease = self.kube.get_lease(self.namespace, self.name)
        if lease is None:
            try:
                self.kube.create_lease(self.namespace, self.name, self._spec())
            except KubeError as error:
                if error.conflict:
                    return False
                raise
            return True
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        record = f"{holder}/{spec.get('renewTime')}"
        if holder and holder != self.identity:
            if self._observed is None or self._observed[0] != record:
                self._observed = (record, time.monotonic())
                return False
            if time.monotonic() - self._observed[1] < self.duration:
                return False
            log.info("Leader lease expired; taking over lease=%s/%s from=%s", self.namespace,
                     self.name, holder)
        try:
            self.kube.replace_lease(self.namespace, self.name, lease["metadata"]["resourceVersion"],
                                    self._spec())
        except KubeError as error:
            if error.conflict:
                return False  # another candidate was quicker
            raise
        return True

    def _renew_loop(self) -> None:
        while True:
            time.sleep(self.renew_every)
            try:
                lease = self.kube.get_lease(self.namespace, self.name)
                spec = (lease or {}).get("spec") or {}
                if self._releasing:
                    return
                if lease is None or spec.get("holderIdentity") != self.identity:
                    log.error("Leader lease lost to another replica lease=%s/%s; exiting",
                              self.namespace, self.name)
                    self.on_lost()
                    return
                self.kube.replace_lease(self.namespace, self.name,
                                        lease["metadata"]["resourceVersion"],
                                        self._spec(spec.get("acquireTime")))
                self._last_renewed = time.monotonic()
            except KubeError as error:
                # The watchdog gives up before another replica may take over: it waits
                # `duration` from the last change it saw, no earlier than our last renewal.
                log.warning("Leader lease renewal failed error=%s", error)
