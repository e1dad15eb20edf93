"""e2e fixtures: Conveyor's CRDs on the cluster, and a real `conveyor-operator` process per test,
watching the test's namespace, on the session's vhost."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.operator import OperatorProcess, running_operator

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def crds(cluster) -> None:  # type: ignore[no-untyped-def]
    """Conveyor's CRDs, applied (and established) once per session."""
    env = cluster.env()
    subprocess.run(["kubectl", "apply", "-f", str(REPO / "crds")], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    subprocess.run(["kubectl", "wait", "--for=condition=Established", "--timeout=60s",
                    "-f", str(REPO / "crds")], env=env, check=True, stdout=subprocess.DEVNULL)


@pytest.fixture
def operator(cluster, amqp_url: str, namespace: str, crds: None,  # type: ignore[no-untyped-def]
             tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[OperatorProcess]:
    """`conveyor-operator` watching the test's namespace; its log is printed on failure."""
    yield from running_operator(cluster, amqp_url, namespace, tmp_path, request)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture
def kubectl(cluster, namespace: str):  # type: ignore[no-untyped-def]
    """Run kubectl in the test's namespace; returns stdout, raises with stderr on failure."""
    env = cluster.env()

    def run(*args: str, stdin: str | None = None, check: bool = True) -> str:
        result = subprocess.run(["kubectl", "-n", namespace, *args], env=env, input=stdin,
                                capture_output=True, text=True, timeout=120, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    return run


def worker_env_path() -> str:
    """PYTHONPATH that makes the e2e worker module importable by worker pods (test bed)."""
    return os.pathsep.join([str(REPO / "tests" / "e2e" / "workers")])
