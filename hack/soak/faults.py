"""The fault plan carried out: each part killed at its time, started again after its outage,
and watched until it serves again, so the report can say how long each was really away.

One thread walks the plan's kills and restarts in time order (sleeping only to keep to the
plan's times); each restart gets a watcher thread that polls, with a deadline, until the part
serves, so a slow recovery never delays the next fault.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from soak.schedule import Fault
from soak.supervising import OperatorSupervisor
from testbed import parts, procs
from testbed.layout import Paths, Ports

SERVING_TIMEOUT = 180.0


class Target(Protocol):
    """One kind of part the plan can kill."""

    def kill(self) -> str:
        """SIGKILL it; say what was killed."""

    def restart(self) -> None:
        """Start it again (or let it be started); may return before it serves."""

    def serving(self) -> bool:
        """Whether it is back and working."""


@dataclass
class Happened:
    """What became of one fault of the plan; times in seconds since the plan's start."""

    fault: Fault
    killed_at: float | None = None
    restarted_at: float | None = None
    serving_at: float | None = None
    what: str = ""
    error: str | None = None
    done_at_kill: int | None = None
    """Executions in the ledger when the part was killed: a fault after the last one tests
    nothing."""


class Daemon:
    """etcd, the API server or RabbitMQ, through the test bed. One that dies while starting
    again is started once more, as its supervisor (systemd, a kubelet) would, at most
    `RESTARTS` times; what it logged is kept for the report."""

    RESTARTS = 5

    def __init__(self, p: Paths, ports: Ports, name: str) -> None:
        self._p, self._ports, self._name = p, ports, name
        self.died: list[str] = []
        """The last log lines of each start that did not stay up."""

    def kill(self) -> str:
        pids = parts.kill(self._p, self._name)
        return f"{self._name} pids={','.join(map(str, pids)) or 'none running'}"

    def restart(self) -> None:
        parts.restart(self._p, self._ports, self._name, wait=False)

    def serving(self) -> bool:
        if procs.running_pid(self._p.pids, self._name) is None:
            if len(self.died) >= self.RESTARTS:
                raise RuntimeError(f"{self._name} died {len(self.died)} times while starting: "
                                   f"{self.died[-1]}")
            self.died.append(parts.log_tail(self._p, self._name))
            parts.start(self._p, self._ports, self._name)
            return False
        return parts.serving(self._p, self._ports, self._name)


class Operator:
    def __init__(self, supervisor: OperatorSupervisor) -> None:
        self._supervisor = supervisor

    def kill(self) -> str:
        return self._supervisor.kill()

    def restart(self) -> None:
        self._supervisor.release()

    def serving(self) -> bool:
        return self._supervisor.serving()


class Worker:
    """One worker pod's container, killed by its pid; the node agent restarts it. Each kill
    takes the next pod in name order, so two kills hit two pods when there are two."""

    def __init__(self, p: Paths, namespace: str) -> None:
        self._p, self._namespace = p, namespace
        self._kills = 0
        self._pod = ""
        self._killed: set[int] = set()

    def kill(self) -> str:
        pods = parts.live_pods(self._p, self._namespace)
        if not pods:
            return "no worker pod was running"
        self._pod = pods[self._kills % len(pods)]
        self._kills += 1
        self._killed = set(parts.kill_pod(self._p, self._pod))
        return f"pod {self._pod} pids={','.join(map(str, sorted(self._killed)))}"

    def restart(self) -> None:
        pass  # the node agent restarts the container (restartPolicy Always)

    def serving(self) -> bool:
        return bool(self._pod) and any(
            pid not in self._killed for pid in parts.pod_pids(self._p, self._pod))


@dataclass
class Executor:
    """Carries out `plan` from `start` (a time.monotonic()), in a thread of its own."""

    plan: list[Fault]
    targets: dict[str, Target]
    start: float = field(default_factory=time.monotonic)
    progress: Callable[[], int] = lambda: 0
    happened: list[Happened] = field(init=False)
    _watchers: list[threading.Thread] = field(init=False, default_factory=list)
    _thread: threading.Thread | None = field(init=False, default=None)
    _abort: threading.Event = field(init=False, default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.happened = [Happened(f) for f in self.plan]

    def begin(self) -> None:
        self._thread = threading.Thread(target=self._walk, name="faults", daemon=True)
        self._thread.start()

    def done(self) -> bool:
        """Every fault carried out and every restarted part watched to the end."""
        walked = self._thread is not None and not self._thread.is_alive()
        return walked and not any(w.is_alive() for w in self._watchers)

    def abort(self) -> None:
        """Stop where it is (the soak is ending early): every killed part is restarted, and
        the restarts are not watched."""
        self._abort.set()
        if self._thread is not None:
            self._thread.join(timeout=60)

    def healed_at(self) -> float | None:
        """When the last part was back (seconds since the start), once all are."""
        if not self.done():
            return None
        ends = [h.serving_at for h in self.happened if h.serving_at is not None]
        return max(ends, default=0.0)

    def _now(self) -> float:
        return time.monotonic() - self.start

    def _walk(self) -> None:
        steps: list[tuple[float, int, Happened]] = []
        for h in self.happened:
            steps.append((h.fault.at, 0, h))
            steps.append((h.fault.until, 1, h))  # restarts after kills due at the same time
        steps.sort(key=lambda s: (s[0], s[1]))
        for at, restart, h in steps:
            if self._abort.wait(max(0.0, at - self._now())):  # keep to the plan's times
                break
            self._step(h, bool(restart))
        for h in self.happened:  # an aborted plan leaves nothing down
            if h.killed_at is not None and h.restarted_at is None:
                self._step(h, restart=True)

    def _step(self, h: Happened, restart: bool) -> None:
        target = self.targets[h.fault.target]
        try:
            if not restart:
                h.what = target.kill()
                h.killed_at = self._now()
                h.done_at_kill = self.progress()
                return
            if h.killed_at is None:
                return  # the kill failed: nothing to bring back
            target.restart()
            h.restarted_at = self._now()
        except Exception as error:  # recorded in the report; the plan goes on
            h.error = f"{'restart' if restart else 'kill'}: {error!r}"
            return
        if not self._abort.is_set():
            watcher = threading.Thread(target=self._watch, args=(h, target),
                                       name=f"watch-{h.fault}", daemon=True)
            self._watchers.append(watcher)
            watcher.start()

    def _watch(self, h: Happened, target: Target) -> None:
        deadline = time.monotonic() + SERVING_TIMEOUT
        last = ""
        while time.monotonic() < deadline and not self._abort.is_set():
            try:
                if target.serving():
                    h.serving_at = self._now()
                    died = getattr(target, "died", [])
                    if died:
                        h.what += f" (died {len(died)}x while starting: {died[-1]})"
                    return
            except Exception as error:  # not serving yet: polled again
                last = repr(error)
            time.sleep(0.2)
        h.error = h.error or (f"not serving {SERVING_TIMEOUT:.0f}s after its restart"
                              + (f"; last: {last}" if last else ""))
