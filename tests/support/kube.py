"""Small helpers for tests that drive the API server: pods, their phases and exit codes."""

from __future__ import annotations

import os
from typing import Any

import pytest

EXTERNAL_REASON = (
    "inspects the local test bed's processes and files; a real cluster runs images instead"
)
local_testbed_only = pytest.mark.skipif(
    os.environ.get("CONVEYOR_TEST_USE_KUBECONFIG") == "1", reason=EXTERNAL_REASON
)


def python_container(name: str, script: str, **extra: Any) -> dict[str, Any]:
    """A container that runs `script` with the test bed's Python (on the pods' PATH)."""
    return {"name": name, "image": "python:3.11-slim", "command": ["python", "-c", script],
            **extra}


def pod_manifest(name: str, containers: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": containers, "terminationGracePeriodSeconds": 5, **spec}}


def container_state(pod: Any, name: str | None = None) -> Any:
    statuses = pod.status.container_statuses or []
    for status in statuses:
        if name is None or status.name == name:
            return status
    return None
