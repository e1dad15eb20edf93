"""A `conveyor-operator` process for e2e tests: start, kill, restart, read its log."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest


@dataclass
class OperatorProcess:
    argv: Sequence[str]
    env: Mapping[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                list(self.argv), env=dict(self.env), stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self, sig: signal.Signals = signal.SIGKILL) -> None:
        """Send `sig` to the operator and wait for it to end."""
        if self.process is None:
            return
        if self.process.poll() is None:
            os.killpg(self.process.pid, sig)
        self.process.wait(timeout=60)

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, sig)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=20)

    def restart(self) -> None:
        self.stop()
        self.start()

    def tail(self, lines: int = 60) -> str:
        return log_tail(self.log, lines)


def log_tail(log: Path, lines: int = 60) -> str:
    """The last `lines` lines of an operator's log; empty before it wrote one."""
    if not log.exists():
        return ""
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def operator_process(cluster: Any, amqp_url: str, namespace: str, log: Path,
                     **extra_env: str) -> OperatorProcess:
    """An operator for `namespace` (not started), electing its leader with a Lease there;
    `extra_env` adds to (or overrides) its environment."""
    env = {**cluster.env(), "CONVEYOR_AMQP_URL": amqp_url, "CONVEYOR_HEALTH_PORT": "0",
           "PYTHONUNBUFFERED": "1", **extra_env}
    return OperatorProcess(argv=[sys.executable, "-m", "conveyor.operator", "-n", namespace],
                           env=env, log=log)


def running_operator(cluster, amqp_url: str, namespace: str, tmp_path: Path,  # type: ignore[no-untyped-def]
                     request: pytest.FixtureRequest,
                     **extra_env: str) -> Iterator[OperatorProcess]:
    """The body of an operator fixture: start it (with `extra_env`), yield it, stop it, and
    print its log if the test failed."""
    process = operator_process(cluster, amqp_url, namespace, tmp_path / "operator.log",
                               **extra_env)
    process.start()
    yield process
    process.stop(signal.SIGTERM)
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        # The test's other replicas (a standby, a third operator) log beside this one.
        for log in sorted(tmp_path.glob("*.log"), key=lambda p: p != process.log):
            print(f"\n--- operator log ({log}) ---\n{log_tail(log, 150)}")
