"""What the benchmarks on the test bed share: kubectl, the operator as a local process, the
API server's own request counters, the worker pool's readiness, a status time as a number.

The benches run as scripts (`bench/` is their sys.path[0]), so they import this as `benchlib`.
"""

from __future__ import annotations

import os
import re
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
WRITE_VERBS = frozenset({"PATCH", "PUT", "POST", "DELETE", "DELETECOLLECTION", "APPLY",
                         "UPDATE", "CREATE"})
_SAMPLE = re.compile(r'^apiserver_request_total\{(.*)\} (\S+)$')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')

RequestKey = tuple[str, str, str]
"""(verb, resource, subresource) of `apiserver_request_total`, e.g. ("PUT", "workflowruns",
"status"); summed over codes, groups, versions and scopes."""


def kubectl(*args: str, stdin: str | None = None) -> str:
    return subprocess.run(["kubectl", *args], input=stdin, capture_output=True, text=True,
                          check=True).stdout


def start_operator(namespace: str, log: Path, **env: str) -> subprocess.Popen[bytes]:
    """`conveyor-operator` for `namespace`, its output appended to `log`; `env` on top."""
    return subprocess.Popen(
        [sys.executable, "-m", "conveyor.operator", "-n", namespace],
        env={**os.environ, "CONVEYOR_HEALTH_PORT": "0", **env},
        stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)


def parse_requests(text: str) -> dict[RequestKey, float]:
    """`apiserver_request_total` of a `/metrics` text by (verb, resource, subresource)."""
    totals: dict[RequestKey, float] = {}
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if not m:
            continue
        labels = dict(_LABEL.findall(m.group(1)))
        key = (labels.get("verb", ""), labels.get("resource", ""), labels.get("subresource", ""))
        totals[key] = totals.get(key, 0.0) + float(m.group(2))
    return totals


def writes_of(requests: Mapping[RequestKey, float], resource: str) -> float:
    """Mutating requests among `requests` for `resource`, any subresource."""
    return sum(n for (verb, res, _), n in requests.items()
               if res == resource and verb in WRITE_VERBS)


def apiserver_requests() -> dict[RequestKey, float]:
    """The API server's own request counter, read from its `/metrics` (KUBECONFIG's cluster)."""
    config = yaml.safe_load(Path(os.environ["KUBECONFIG"]).read_text())
    cluster, user = config["clusters"][0]["cluster"], config["users"][0]["user"]
    ctx = ssl.create_default_context(cafile=cluster["certificate-authority"])
    ctx.load_cert_chain(user["client-certificate"], user["client-key"])
    with urllib.request.urlopen(f"{cluster['server']}/metrics", context=ctx) as response:
        return parse_requests(response.read().decode())


def apiserver_writes(resource: str) -> float:
    """Mutating requests the API server served for `resource` (its own counter)."""
    return writes_of(apiserver_requests(), resource)


def when(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def wait_ready(namespace: str, replicas: int, deployment: str = "bench-noop",
               timeout: float = 120) -> None:
    """Wait until `deployment` (a worker pool) has `replicas` ready replicas."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = kubectl("-n", namespace, "get", "deploy", deployment, "-o",
                      "jsonpath={.status.readyReplicas}") if deployment in kubectl(
            "-n", namespace, "get", "deploy", "-o", "name") else ""
        if out and int(out) == replicas:
            return
        time.sleep(0.5)  # a benchmark's poll, not a test's wait
    raise SystemExit(f"the worker pool {deployment} did not become ready")
