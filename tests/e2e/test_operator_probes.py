"""The operator's probes on the test bed, as the chart's kubelet would call them: a broker
outage (at start, then while it runs) turns `/readyz` 503 and leaves `/livez` 200, so it never
restarts the operator; both recover when the broker is back. And a pool whose worker command
exits at once says CrashLoopBackOff in the Workflow's status and in `conveyor get`."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support import http
from support.kube import local_testbed_only
from support.operator import OperatorProcess, running_operator
from support.waiting import eventually
from support.workflows import as_json, run, work_type, workflow
from testbed import parts
from testbed.layout import paths, ports

pytestmark = [pytest.mark.e2e, local_testbed_only]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Probes:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.liveness: list[tuple[int, str]] = []  # every /livez answer seen

    def live(self) -> tuple[int, str]:
        got = http.answer(f"{self.base}/livez")
        self.liveness.append(got)
        return got

    def ready(self) -> tuple[int, str]:
        return http.answer(f"{self.base}/readyz")

    def readiness_becomes(self, status: int, timeout: float, what: str) -> str:
        """Poll until /readyz answers `status` (200: the leader's "ok", not a standby's),
        asking /livez on each poll too (`liveness`)."""
        def check() -> str | None:
            self.live()  # checked by the caller: `eventually` would retry on a failure
            code, text = self.ready()
            if status == 200 and text != "ok\n":
                return None
            return text if code == status else None

        return eventually(check, timeout, interval=0.5, what=what)


@pytest.fixture
def probed_operator(cluster, amqp_url: str, namespace: str, crds: None, tmp_path: Path,  # type: ignore[no-untyped-def]
                    request: pytest.FixtureRequest) -> Iterator[tuple[OperatorProcess, Probes]]:
    port = _free_port()
    for process in running_operator(cluster, amqp_url, namespace, tmp_path, request,
                                    CONVEYOR_HEALTH_PORT=str(port),
                                    CONVEYOR_HEALTH_ADDRESS="127.0.0.1"):
        yield process, Probes(port)


@pytest.fixture
def broker_down() -> Iterator[None]:
    """The test bed's RabbitMQ killed, and restarted whatever the test did."""
    p = paths()
    assert parts.kill(p, "rabbitmq"), "RabbitMQ was not running"
    try:
        yield
    finally:
        parts.restart(p, ports(), "rabbitmq")


def test_a_broker_outage_fails_readiness_never_liveness_and_both_recover(
        probed_operator: tuple[OperatorProcess, Probes]) -> None:
    process, probes = probed_operator
    probes.readiness_becomes(200, 90, "/readyz 200 once started")
    probes.liveness.clear()  # from here on, every answer counts (eventually retries on errors)
    p = paths()
    started = time.monotonic()
    assert parts.kill(p, "rabbitmq"), "RabbitMQ was not running"
    try:
        text = probes.readiness_becomes(503, 90, "/readyz 503 with the broker gone")
        unready_after = time.monotonic() - started
        assert "broker link events down for" in text, text
        # Well past the broker's grace: still live, the process never restarted.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            assert probes.live()[0] == 200
            time.sleep(0.5)
        assert process.alive
    finally:
        parts.restart(p, ports(), "rabbitmq")
    back = time.monotonic()
    probes.readiness_becomes(200, 120, "/readyz 200 with the broker back")
    print(f"unready {unready_after:.1f}s after the kill, ready again "
          f"{time.monotonic() - back:.1f}s after the restart; /livez answered "
          f"{len(probes.liveness)} times, always 200")
    assert all(code == 200 for code, _ in probes.liveness)
    assert http.answer(f"{probes.base}/healthz")[0] == 200


def test_an_operator_started_while_the_broker_is_down_waits_live_and_unready(
        cluster, amqp_url: str, namespace: str, crds: None, tmp_path: Path,  # type: ignore[no-untyped-def]
        request: pytest.FixtureRequest, broker_down: None) -> None:
    port = _free_port()
    probes = Probes(port)
    for process in running_operator(cluster, amqp_url, namespace, tmp_path, request,
                                    CONVEYOR_HEALTH_PORT=str(port),
                                    CONVEYOR_HEALTH_ADDRESS="127.0.0.1"):
        eventually(lambda: probes.ready()[1].startswith("starting: "), 60,
                   what="the leader's /readyz while starting")
        probes.liveness.clear()
        code, text = probes.ready()
        assert code == 503 and text.startswith("starting: "), (code, text)
        # Two start attempts retried: still waiting, still live.
        eventually(lambda proc=process: proc.tail(400).count("Start waits for the broker") >= 2, 60,
                   what="two logged start retries")
        assert probes.live()[0] == 200 and process.alive
        parts.restart(paths(), ports(), "rabbitmq")
        probes.readiness_becomes(200, 120, "/readyz 200 once the broker is back")
        assert probes.liveness and all(code == 200 for code, _ in probes.liveness)
        assert "Operator started" in process.log.read_text()


def _cli(cluster, amqp_url: str, namespace: str, *args: str) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    return subprocess.run([sys.executable, "-m", "conveyor.cli", *args, "-n", namespace],
                          env=dict(cluster.env(), CONVEYOR_AMQP_URL=amqp_url),
                          capture_output=True, text=True, timeout=60, check=False)


def test_a_crash_looping_pool_says_so_in_the_workflow_status_and_in_conveyor_get(
        operator: OperatorProcess, kubectl, cluster, amqp_url: str, namespace: str) -> None:  # type: ignore[no-untyped-def]
    crashing = work_type("crashing", scaling={"minReplicas": 1})
    crashing["command"] = [sys.executable, "-c", "raise SystemExit(3)"]
    wf = workflow("crashy", [{"name": "a", "type": "crashing"}], taskTypes=[crashing])
    kubectl("apply", "-f", "-", stdin=as_json(wf, run("r1", "crashy")))

    def pool_reason() -> dict[str, Any] | None:
        status = json.loads(kubectl("get", "workflow", "crashy", "-o", "json")).get(
            "status") or {}
        pools = {p["name"]: p for p in status.get("taskTypes") or []}
        entry = pools.get("crashing") or {}
        return status if entry.get("reason") == "CrashLoopBackOff" else None

    status = eventually(pool_reason, 120, interval=1, what="the pool's CrashLoopBackOff")
    [entry] = status["taskTypes"]
    assert "crashed and was restarted" in entry["message"], entry
    assert "last exit code 3 (Error)" in entry["message"], entry
    assert "restarting failed container=worker" in entry["message"], entry
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["PoolsHealthy"]["status"] == "False"
    assert conditions["PoolsHealthy"]["reason"] == "CrashLoopBackOff"
    assert conditions["PoolsHealthy"]["observedGeneration"] == 1
    assert conditions["Ready"]["status"] == "True"

    got = _cli(cluster, amqp_url, namespace, "get", "workflow/crashy")
    assert got.returncode == 0, got.stderr
    [row] = [line for line in got.stdout.splitlines() if line.startswith("crashing ")]
    assert "CrashLoopBackOff" in row, got.stdout
    got = _cli(cluster, amqp_url, namespace, "get", "r1")
    assert got.returncode == 0, got.stderr
    assert any(line.startswith("crashing ") and "CrashLoopBackOff" in line
               for line in got.stdout.splitlines()), got.stdout
    listed = _cli(cluster, amqp_url, namespace, "list", "workflows")
    assert "CrashLoopBackOff" in listed.stdout, listed.stdout
