"""Nothing secret shows where people and tools look: the broker's password (alone, in its URL,
percent-encoded, base64-encoded as a Secret's data shows it) and the operator's ServiceAccount
token (or any other JSON Web Token) appear in none of the operator's log at DEBUG, the
workers' logs at DEBUG, the namespace's Events, the Workflows' and runs' objects with their
status, the Deployments and pods the operator made, its /metrics and /healthz, and the output
of the `conveyor` CLI, including its errors.

The operator runs as a process with nothing but a token of the chart's ServiceAccount (the
chart's RBAC installed, no operator pod), so the same run also shows that the operator's
calls succeed under that RBAC: its pools, runs that succeed and fail, a broker outage (on the
test bed: RabbitMQ stopped and started) and a run after it.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from conveyor.children import amqp_secret_name
from support.accounts import service_account_token, token_kubeconfig
from support.helm import release
from support.operator import OperatorProcess
from support.waiting import eventually
from support.workflows import as_json, run, work_type, workflow
from testbed import rabbitmq
from testbed.layout import paths, ports

pytestmark = pytest.mark.e2e

CLI = Path(sys.executable).parent / "conveyor"
# A JSON Web Token: a ServiceAccount token, whichever one, has this shape.
JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")
TERMINAL = ("Succeeded", "Failed", "Cancelled")


def _local_testbed() -> bool:
    return os.environ.get("CONVEYOR_TEST_USE_KUBECONFIG") != "1"


@dataclass(frozen=True)
class Needles:
    """The secrets, each under a name that a failure may print instead of the value."""

    values: dict[str, str]

    @classmethod
    def of(cls, amqp_url: str, token: str) -> Needles:
        password = urllib.parse.urlsplit(amqp_url).password or ""
        assert len(password) >= 8, "the session's broker password is too short to search for"
        values = {"the broker password": urllib.parse.unquote(password),
                  "the percent-encoded broker password": password,
                  "the broker URL": amqp_url, "the operator's token": token}
        assert token, "no token to search for"
        for name, value in list(values.items()):
            values[f"{name}, base64-encoded"] = base64.b64encode(value.encode()).decode()
        return cls(values)

    def found(self, text: str) -> list[str]:
        """What `text` holds, by name; a line around each find with the secret blanked."""
        finds = []
        for name, value in self.values.items():
            at = text.find(value)
            if at >= 0:
                context = text[max(0, at - 80):at + len(value) + 80].replace(value, "<HIDDEN>")
                finds.append(f"{name}: ...{self.blank(context)}...")
        for match in JWT.finditer(text):
            before = text[max(0, match.start() - 80):match.start()]
            finds.append(f"a JSON Web Token: ...{self.blank(before)}<JWT>...")
        return finds

    def blank(self, text: str) -> str:
        for value in self.values.values():
            text = text.replace(value, "<HIDDEN>")
        return JWT.sub("<JWT>", text)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cli(env: dict[str, str], *args: str) -> tuple[str, str]:
    """`conveyor ARGS`: (the command with its exit code, its stdout and stderr), whatever the
    exit code: errors count too. The command is kept apart, it may hold a URL on purpose."""
    result = subprocess.run([str(CLI), *args], env=env, capture_output=True, text=True,
                            timeout=120, check=False)
    return f"conveyor {' '.join(args)} (exit {result.returncode})", result.stdout + result.stderr


@pytest.fixture
def broker_outage() -> Iterator[Any]:
    """Stop the test bed's RabbitMQ, then start it; it runs again afterwards whatever
    happened. None against another cluster: its broker is not ours to stop."""
    if not _local_testbed():
        yield None
        return

    class Outage:
        def begin(self) -> None:
            rabbitmq.stop(paths())

        def end(self) -> None:
            rabbitmq.start(paths(), ports())
            rabbitmq.wait(paths(), ports())

    yield Outage()
    try:
        rabbitmq.wait(paths(), ports(), timeout=5)
    except Exception:
        Outage().end()


def _operator(cluster: Any, api_client: Any, namespace: str, fullname: str, amqp_url: str,
              tmp_path: Path) -> tuple[OperatorProcess, str, int]:
    """The operator at its most verbose, with a token of the chart's ServiceAccount as its
    only credential; (process, token, health port)."""
    token = service_account_token(api_client, namespace, fullname)
    kubeconfig = token_kubeconfig(api_client, token, tmp_path / "operator.kubeconfig",
                                  namespace)
    port = _free_port()
    env = {**cluster.env(), "KUBECONFIG": str(kubeconfig), "CONVEYOR_AMQP_URL": amqp_url,
           "POD_NAMESPACE": namespace, "CONVEYOR_LEADER_LEASE": fullname,
           "CONVEYOR_OPERATOR_DEPLOYMENT": fullname,  # as in the chart's pod
           "CONVEYOR_HEALTH_ADDRESS": "127.0.0.1", "CONVEYOR_HEALTH_PORT": str(port),
           "PYTHONUNBUFFERED": "1"}
    argv = [sys.executable, "-m", "conveyor.operator", "-n", namespace, "--log-level", "DEBUG"]
    return OperatorProcess(argv=argv, env=env, log=tmp_path / "operator.log"), token, port


def _verbose_type(min_replicas: int) -> dict[str, Any]:
    """The e2e workers at DEBUG; a pool kept at one has its log there to read on any cluster,
    a pool at zero scales down (the operator annotates and scales) once idle."""
    task_type = work_type(scaling={"minReplicas": min_replicas})
    task_type["env"].append({"name": "CONVEYOR_LOG_LEVEL", "value": "DEBUG"})
    return task_type


def _phase(kubectl: Any, name: str) -> str:
    out = kubectl("get", "cwr", name, "-o", "jsonpath={.status.phase}", check=False)
    return str(out).strip()


def _finished(kubectl: Any, *runs: str, timeout: float = 120) -> dict[str, str]:
    eventually(lambda: all(_phase(kubectl, r) in TERMINAL for r in runs), timeout,
               interval=0.3, what=f"runs {', '.join(runs)} to finish")
    return {r: _phase(kubectl, r) for r in runs}


def _worker_logs(kubectl: Any, namespace: str) -> dict[str, str]:
    if _local_testbed():
        return {f"worker log {p.parent.name}": p.read_text(errors="replace")
                for p in (paths().pods / namespace).glob("*/worker.log")}
    pods = kubectl("get", "pods", "-l", "app.kubernetes.io/name=conveyor-worker", "-o",
                   "name").split()
    return {f"worker log {p}": kubectl("logs", p, check=False) for p in pods}


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode(errors="replace"))


def test_no_secret_in_logs_events_status_metrics_or_cli_output(
        cluster: Any, api_client: Any, namespace: str, amqp_url: str, crds: None,
        kubectl: Any, broker_outage: Any, tmp_path: Path) -> None:
    values = {"replicaCount": 0, "crds": {"enabled": False},
              "rbac": {"create": True, "userRoles": False},
              "operator": {"namespaces": [namespace]}, "amqp": {"url": amqp_url}}
    with release(f"ss-{secrets.token_hex(3)}", namespace, values, cluster.env(),
                 tmp_path / "values.yaml") as fullname:
        operator, token, port = _operator(cluster, api_client, namespace, fullname, amqp_url,
                                          tmp_path)
        needles = Needles.of(amqp_url, token)
        operator.start()
        try:
            sources = _exercise(cluster, kubectl, namespace, amqp_url, broker_outage,
                                operator, port, tmp_path, needles)
        except AssertionError:
            print(f"--- operator log ---\n{needles.blank(operator.tail(150))}")
            raise
        finally:
            operator.stop()
        sources["operator log"] = operator.log.read_text(errors="replace")

    # The search finds what is there: the broker Secret the operator wrote holds the URL.
    assert needles.found(sources.pop("the broker Secret"))
    # The most verbose output was on (the workers log nothing more at DEBUG: they turn pika's
    # logger down, tests/integration/test_broker_secrets.py shows pika's own DEBUG is safe),
    # and the masked URL stands where the password would be.
    assert " DEBUG " in sources["operator log"]
    workers = [text for name, text in sources.items() if name.startswith("worker log")]
    assert workers
    # Under the chart's RBAC alone every call the operator made was allowed (urllib3 logs
    # each answer's status at DEBUG; kopf names a refusal).
    refused = [line for line in sources["operator log"].splitlines()
               if '" 403 ' in line or "Forbidden" in line]
    assert not refused, needles.blank("\n".join(refused[:5]))
    assert all("conveyor:***@" in text for text in [sources["operator log"], *workers])
    leaks = {name: found for name, text in sources.items() if (found := needles.found(text))}
    assert not leaks, "secrets in:\n" + "\n".join(
        f"- {name}: {'; '.join(found)}" for name, found in leaks.items())


def _exercise(cluster: Any, kubectl: Any, namespace: str, amqp_url: str, outage: Any,
              operator: OperatorProcess, port: int, tmp_path: Path,
              needles: Needles) -> dict[str, str]:
    """Everything the operator does, under its account alone: pools up and down, runs that
    succeed and fail, a run a trigger starts, a finished run deleted by its TTL, an outage,
    a Workflow deleted; and the CLI. Returns what to search, by source."""
    good = workflow("good", [{"name": "a", "type": "work", "inputs": {"echo": "hi"}},
                             {"name": "b", "type": "work", "dependsOn": ["a"]}],
                    taskTypes=[_verbose_type(1)], triggers=[{"event": "secrets.test"}])
    bad = workflow("bad", [{"name": "flop", "type": "work", "inputs": {"fail": "always"},
                            "retry": {"limit": 1, "backoffSeconds": 0.1}}],
                   taskTypes=[_verbose_type(0)], ttlSecondsAfterFinished=2)
    kubectl("apply", "-f", "-", stdin=as_json(good, bad, run("r-good", "good"),
                                              run("r-bad", "bad")))
    assert _finished(kubectl, "r-good", "r-bad") == {"r-good": "Succeeded", "r-bad": "Failed"}
    eventually(lambda: not kubectl("get", "cwr", "r-bad", "--ignore-not-found", "-o", "name"),
               60, interval=0.3, what="the TTL to delete the failed run")
    eventually(lambda: kubectl("get", "deployment", "bad-work", "-o",
                               "jsonpath={.spec.replicas}") == "0", 90, interval=0.5,
               what="the idle pool to scale down to zero")

    if outage is not None:
        lost = operator.log.read_text(errors="replace").count("Lost RabbitMQ connection")
        outage.begin()
        eventually(lambda: operator.log.read_text(errors="replace").count(
            "Lost RabbitMQ connection") > lost, 60, interval=0.3,
            what="the operator to notice the broker is gone")
        outage.end()
        kubectl("apply", "-f", "-", stdin=as_json(run("r-after", "good")))
        assert _finished(kubectl, "r-after", timeout=180) == {"r-after": "Succeeded"}

    sources = _cli_outputs(cluster, namespace, amqp_url, tmp_path, needles)
    triggered = eventually(lambda: [r for r in json.loads(kubectl("get", "cwr", "-o", "json"))[
        "items"] if r["metadata"]["name"] not in ("r-good", "r-after", "r-cli")], 60,
        interval=0.3, what="the trigger to start a run")
    assert set(_finished(kubectl, *(r["metadata"]["name"] for r in triggered)).values()) == {
        "Succeeded"}
    kubectl("delete", "cwf", "bad", "--wait=true", "--timeout=90s")  # the finalizer's work

    health = f"http://127.0.0.1:{port}"
    sources["/metrics"] = _get(f"{health}/metrics")
    sources["/healthz"] = _get(f"{health}/healthz")
    sources["Events"] = kubectl("get", "events", "-o", "json")
    sources["Workflows and runs"] = kubectl("get", "cwf,cwr", "-o", "json")
    sources["Deployments and pods"] = kubectl("get", "deployments,replicasets,pods", "-o",
                                              "json")
    sources.update(_worker_logs(kubectl, namespace))
    sources["the broker Secret"] = kubectl("get", "secret", amqp_secret_name("good"), "-o",
                                           "json")
    return sources


def _cli_outputs(cluster: Any, namespace: str, amqp_url: str, tmp_path: Path,
                 needles: Needles) -> dict[str, str]:
    """The CLI as a person uses it, and as the operator's account (refused where its RBAC
    says no), and its errors: an unreachable broker, a URL it refuses, an unreachable API
    server with the token in its kubeconfig."""
    person = {**cluster.env(), "CONVEYOR_AMQP_URL": amqp_url}
    as_operator = tmp_path / "operator.kubeconfig"
    config = yaml.safe_load(as_operator.read_text())
    config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{_free_port()}"
    unreachable = tmp_path / "unreachable.kubeconfig"
    unreachable.write_text(yaml.safe_dump(config))
    unreachable.chmod(0o600)
    operator = {**person, "KUBECONFIG": str(as_operator)}
    lost = {**person, "KUBECONFIG": str(unreachable)}
    password = urllib.parse.urlsplit(amqp_url).password
    ns = ["-n", namespace]
    commands: list[tuple[str, dict[str, str], list[str]]] = [
        ("a person", person, ["get", "r-good", *ns]),
        ("a person", person, ["get", "r-good", *ns, "-o", "yaml"]),
        ("a person", person, ["get", "r-good", *ns, "-o", "json"]),
        ("a person", person, ["list", *ns]),
        ("a person", person, ["list", "workflows", *ns, "-o", "yaml"]),
        ("a person", person, ["watch", "r-good", *ns]),
        ("a person", person, ["submit", "good", *ns, "--name", "r-cli", "--watch"]),
        ("a person", person, ["graph", "good", *ns]),
        ("a person", person, ["dlq", "list", "work", "-w", "bad", *ns]),
        ("a person", person, ["publish", "nothing.listens", "--data", "{}"]),
        ("a person", person, ["publish", "secrets.test", "--data", "{}"]),
        # Errors, where a URL or a token could be echoed.
        ("a person", person, ["dlq", "list", "work", "-w", "bad", *ns, "--amqp-url",
                              f"amqp://conveyor:{password}@127.0.0.1:{_free_port()}/"]),
        ("a person", person, ["publish", "x", "--amqp-url",
                              f"http://conveyor:{password}@127.0.0.1/"]),
        ("the operator's account", operator, ["list", *ns]),
        ("the operator's account", operator, ["get", "r-good", *ns]),
        ("the operator's account, API server unreachable", lost, ["list", *ns]),
    ]
    outputs = {}
    for who, env, args in commands:
        command, out = _cli(env, *args)
        outputs[f"output of `{needles.blank(command)}` as {who}"] = out
    assert len(outputs) == len(commands)
    return outputs
