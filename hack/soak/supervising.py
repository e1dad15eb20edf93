"""The operator under soak: one `conveyor-operator` process kept running the way a Deployment
keeps its pod running. When the process exits (killed by the soak, or on its own: it exits
when it cannot renew its Lease through an API-server outage), a new one is started after a
back-off, unless the soak holds it down. Each process logs to a file of its own, numbered.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from testbed import procs

STARTED_LINE = "Operator started"
"""What the operator logs once it consumes events and drives runs (runtime.py)."""
BACKOFF_FIRST, BACKOFF_MAX, BACKOFF_RESET = 1.0, 10.0, 30.0


@dataclass(frozen=True)
class Exit:
    number: int
    code: int | None
    at: float
    by_soak: bool


class OperatorSupervisor:
    """Keeps one operator process alive; `kill` SIGKILLs it and holds it down until
    `release`."""

    def __init__(self, namespace: str, env: Mapping[str, str], logs: Path) -> None:
        self._argv = [sys.executable, "-m", "conveyor.operator", "-n", namespace]
        self._env = dict(env)
        self._logs = logs
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._held = False
        self._killing = False
        self._process: subprocess.Popen[bytes] | None = None
        self._started_mono = 0.0
        self._backoff = BACKOFF_FIRST
        self._next_start = 0.0
        self.number = 0
        self.exits: list[Exit] = []
        self._thread = threading.Thread(target=self._loop, name="operator", daemon=True)

    def log_of(self, number: int) -> Path:
        return self._logs / f"operator-{number}.log"

    def start(self) -> None:
        self._start()
        self._thread.start()

    def kill(self) -> str:
        """SIGKILL the running operator and hold it down; return what was killed."""
        with self._lock:
            self._held = True
            process = self._process
            if process is None or process.poll() is not None:
                return "no operator was running"
            self._killing = True
            procs.signal_group(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        return f"operator-{self.number} pid={process.pid}"

    def release(self) -> None:
        """Let the operator be started again (at once: a held-down process is not crashing)."""
        with self._lock:
            self._held = False
            self._next_start = 0.0

    def serving(self) -> bool:
        """Whether the current process has started its run loop (after the Lease)."""
        with self._lock:
            if self._process is None or self._process.poll() is not None:
                return False
            number = self.number
        try:
            return STARTED_LINE in self.log_of(number).read_text(errors="replace")
        except FileNotFoundError:
            return False

    def stop(self, grace: float = 30) -> None:
        """SIGTERM the operator (it releases its Lease) and stop supervising."""
        self._stop.set()
        self._thread.join(timeout=5)
        with self._lock:
            process = self._process
        if process is not None and process.poll() is None:
            procs.terminate([process.pid], grace)
            process.wait(timeout=10)

    # -- the loop -----------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.wait(0.2):
            with self._lock:
                process = self._process
                if process is not None and process.poll() is not None:
                    self.exits.append(Exit(self.number, process.returncode, time.monotonic(),
                                           self._killing))
                    if not self._killing:  # it crashed: back off, as a kubelet would
                        up_for = time.monotonic() - self._started_mono
                        if up_for > BACKOFF_RESET:
                            self._backoff = BACKOFF_FIRST
                        self._next_start = time.monotonic() + self._backoff
                        self._backoff = min(self._backoff * 2, BACKOFF_MAX)
                    self._killing = False
                    self._process = None
                due = (self._process is None and not self._held
                       and time.monotonic() >= self._next_start)
            if due:
                self._start()

    def _start(self) -> None:
        with self._lock:
            self.number += 1
            with open(self.log_of(self.number), "ab") as out:
                self._process = subprocess.Popen(
                    self._argv, env=self._env, stdout=out, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, start_new_session=True)
            self._started_mono = time.monotonic()


def operator_env(kubeconfig: Path, amqp_url: str, base: Mapping[str, str] | None = None
                 ) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    env.update(KUBECONFIG=str(kubeconfig), CONVEYOR_AMQP_URL=amqp_url,
               CONVEYOR_HEALTH_PORT="0", PYTHONUNBUFFERED="1")
    return env
