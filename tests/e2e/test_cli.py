"""The `conveyor` CLI against the test bed, run as a user runs it: a subprocess with the
cluster's kubeconfig and the session's broker, its exit code and its output checked."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pika
import pytest

from conveyor import names
from conveyor.broker import Admin
from conveyor.broker.settings import BrokerSettings
from support.waiting import eventually
from support.workflows import as_json, run, workflow
from unit.cli_manifests import CASES, manifest

pytestmark = pytest.mark.e2e


@pytest.fixture
def cli(cluster, amqp_url: str, namespace: str):  # type: ignore[no-untyped-def]
    """Run `conveyor ARGS -n <test namespace>`; returns the CompletedProcess (text)."""
    env = dict(cluster.env(), CONVEYOR_AMQP_URL=amqp_url)

    def call(*args: str, namespaced: bool = True, timeout: float = 180,
             extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "conveyor.cli", *args]
        if namespaced:
            argv += ["-n", namespace]
        return subprocess.run(argv, env={**env, **(extra_env or {})}, capture_output=True,
                              text=True, timeout=timeout, check=False)

    return call


def _one_line_error(result: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def _run_json(cli, name: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    result = cli("get", name, "-o", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def _tasks(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in (obj.get("status") or {}).get("tasks", [])}


def test_submit_watch_get_and_list(operator, kubectl, cli, tmp_path):
    wf = workflow("hello", [
        {"name": "greet", "type": "work", "inputs": {"echo": "${{ inputs.who }}"}},
        {"name": "fan", "type": "work", "dependsOn": ["greet"], "forEach": "${{ inputs.items }}",
         "inputs": {"echo": "${{ item }}"}},
    ])
    kubectl("apply", "-f", "-", stdin=as_json(wf))
    inputs = tmp_path / "inputs.yaml"
    inputs.write_text("who: nobody\nitems: [1, 2, 3]\n")
    result = cli("submit", "hello", "--inputs-file", str(inputs), "--input", "who=ada",
                 "--name", "r1", "--watch")
    assert result.returncode == 0, (result.stdout, result.stderr)
    out = result.stdout
    assert out.startswith("workflowrun/r1 created\n")
    assert "\x1b[" not in out, "no ANSI when stdout is not a terminal"
    frames = out.split("\n\n")
    assert len(frames) >= 2, "a frame per change"
    assert "r1  workflow hello  Succeeded  2/2" in frames[-1]
    assert "[+] fan" in frames[-1] and "items 3/3" in frames[-1]

    obj = _run_json(cli, "r1")
    assert obj["spec"]["inputs"] == {"who": "ada", "items": [1, 2, 3]}
    assert _tasks(obj)["greet"]["outputs"]["echo"] == "ada"
    table = cli("get", "r1").stdout
    assert "[+] greet" in table and "AFTER" in table

    generated = cli("submit", "hello", "--input", 'items=[]', "--input", "who=bob")
    assert generated.returncode == 0, generated.stderr
    second = generated.stdout.split()[0].removeprefix("workflowrun/")
    assert second.startswith("hello-")
    listing = cli("list")
    assert listing.returncode == 0
    assert listing.stdout.splitlines()[0].split() == ["NAME", "WORKFLOW", "PHASE", "PROGRESS",
                                                      "AGE"]
    assert any(line.split()[:3] == ["r1", "hello", "Succeeded"]
               for line in listing.stdout.splitlines())
    as_yaml = cli("list", "--workflow", "hello", "-o", "yaml")
    assert "name: r1" in as_yaml.stdout and f"name: {second}" in as_yaml.stdout
    assert json.loads(cli("list", "--workflow", "other", "-o", "json").stdout) == []
    workflows = cli("list", "workflows")
    assert workflows.stdout.splitlines()[1].split()[:3] == ["hello", "True", "2"]


def test_watch_exits_1_when_the_run_fails_and_retry_reuses_what_succeeded(
    operator, kubectl, cli
):
    wf = workflow("flaky", [
        {"name": "first", "type": "work", "inputs": {"echo": "kept"}},
        {"name": "second", "type": "work", "dependsOn": ["first"], "inputs": {"fail": 1}},
    ])
    kubectl("apply", "-f", "-", stdin=as_json(wf, run("r1", "flaky")))
    watched = cli("watch", "r1")
    assert watched.returncode == 1, (watched.stdout, watched.stderr)
    assert "r1  workflow flaky  Failed" in watched.stdout
    assert "message: task second failed after 1 attempt" in watched.stdout

    retried = cli("retry", "r1", "--name", "r2")
    assert retried.returncode == 0, retried.stderr
    assert "workflowrun/r2 created, reusing 1 task(s): first" in retried.stdout
    obj = _run_json(cli, "r2")
    assert obj["spec"]["reuse"] == {"first": {"echo": "kept", "attempt": 1}}
    assert obj["metadata"]["annotations"]["conveyor.dev/retry-of"] == "r1"
    assert cli("watch", "r2").returncode == 1  # `second` fails its first attempt again
    first = _tasks(_run_json(cli, "r2"))["first"]
    assert first.get("reason") == "Reused"
    assert "attempts" not in first and first["outputs"] == {"echo": "kept", "attempt": 1}


def test_cancel_and_retry_of_a_running_run(operator, kubectl, cli):
    wf = workflow("slow", [{"name": "long", "type": "work", "inputs": {"seconds": 60}}])
    kubectl("apply", "-f", "-", stdin=as_json(wf, run("r1", "slow")))
    eventually(lambda: _tasks(_run_json(cli, "r1")).get("long", {}).get("phase") == "Running",
               60, what="the task to run")
    refused = cli("retry", "r1")
    _one_line_error(refused, 1, "is Running")
    cancelled = cli("cancel", "r1")
    assert cancelled.returncode == 0 and "cancel requested" in cancelled.stdout
    watched = cli("watch", "r1")
    assert watched.returncode == 1 and "Cancelled" in watched.stdout
    assert "already ended: Cancelled" in cli("cancel", "r1").stdout


def test_errors_are_one_line_with_their_exit_code(cli, namespace, cluster, tmp_path, crds):
    _one_line_error(cli("get", "nope"), 3, "workflowrun 'nope' not found", namespace)
    _one_line_error(cli("submit", "ghost"), 3, "workflow 'ghost' not found")
    _one_line_error(cli("watch", "nope"), 3, "not found")
    _one_line_error(cli("cancel", "nope"), 3)
    _one_line_error(cli("retry", "nope"), 3)
    _one_line_error(cli("submit", "ghost", "--input", "novalue"), 2, "KEY=VALUE")
    _one_line_error(cli("publish", "x", "--data", "{bad", namespaced=False), 2,
                    "--data is not JSON")
    _one_line_error(cli("get", "r1", "--kubeconfig", str(tmp_path / "absent")), 4,
                    "no cluster configured")
    dead = tmp_path / "kubeconfig"
    text = cluster.kubeconfig.read_text()
    server = next(line.split("server:")[1].strip() for line in text.splitlines()
                  if "server:" in line)
    dead.write_text(text.replace(server, "https://127.0.0.1:1"))
    _one_line_error(cli("list", "--kubeconfig", str(dead)), 4, "cannot reach the API server")
    unreachable = {"CONVEYOR_AMQP_URL": "amqp://guest:guest@127.0.0.1:1/%2F"}
    _one_line_error(cli("publish", "x", namespaced=False, extra_env=unreachable), 5,
                    "cannot connect to RabbitMQ", "***")
    _one_line_error(cli("dlq", "list", "work", "-w", "wf", extra_env=unreachable), 5)


def test_lint_says_what_the_api_server_and_the_operator_say(operator, kubectl, cli, tmp_path):
    """Every broken manifest of the unit tests, given to the real API server and operator:
    lint's message is the one they give."""
    files = []
    for name, tasks, line, stage, _ in CASES:
        path = tmp_path / f"{name}.yaml"
        path.write_text(manifest(tasks).replace("name: broken", f"name: {name}"))
        files.append((path, line, stage))
    result = cli("lint", "-o", "json", *[str(p) for p, _, _ in files], namespaced=False)
    assert result.returncode == 1
    findings = {Path(f["file"]).stem: f for f in json.loads(result.stdout)}
    assert len(findings) == len(CASES)
    for path, line, stage in files:
        finding = findings[path.stem]
        assert (finding["line"], finding["stage"]) == (line, stage)
        if stage == "admission":
            rejected = _apply(kubectl, path)
            assert finding["message"] in rejected, (finding["message"], rejected)
        else:
            assert _apply(kubectl, path) == ""
            message = eventually(lambda p=path: _invalid_spec(kubectl, p.stem), 60,
                                 what=f"{path.stem} to be reported InvalidSpec")
            assert finding["message"] in message, (finding["message"], message)
    clean = cli("lint", "examples/", namespaced=False)
    assert clean.returncode == 0 and "no problems" in clean.stderr


def _apply(kubectl, path: Path) -> str:  # type: ignore[no-untyped-def]
    """kubectl apply's complaint about the manifest, "" if it was accepted."""
    try:
        kubectl("apply", "-f", str(path))
    except AssertionError as error:
        return str(error)
    return ""


def _invalid_spec(kubectl, name: str) -> str:  # type: ignore[no-untyped-def]
    obj = json.loads(kubectl("get", "cwf", name, "-o", "json"))
    for condition in (obj.get("status") or {}).get("conditions", []):
        if condition["type"] == "Ready" and condition.get("reason") == "InvalidSpec":
            return str(condition["message"])
    return ""


def test_graph_from_the_cluster_and_from_a_file(kubectl, cli, crds, tmp_path):
    wf = workflow("shape", [{"name": "a", "type": "work"},
                            {"name": "b-c", "type": "work", "dependsOn": ["a"]}],
                  **{"finally": [{"name": "z", "type": "work"}]})
    kubectl("apply", "-f", "-", stdin=as_json(wf))
    dot = cli("graph", "shape", "--format", "dot")
    assert dot.returncode == 0, dot.stderr
    assert '"a" -> "b-c";' in dot.stdout and '"b-c" -> "z" [style=dashed];' in dot.stdout
    path = tmp_path / "shape.json"
    path.write_text(as_json(wf))
    mermaid = cli("graph", str(path), namespaced=False)
    assert mermaid.returncode == 0 and "t0 --> t1" in mermaid.stdout
    _one_line_error(cli("graph", "ghost"), 3, "workflow 'ghost' not found")


def test_publish_starts_a_run_through_a_trigger(operator, kubectl, cli):
    wf = workflow("triggered", [{"name": "t", "type": "work",
                                 "inputs": {"echo": "${{ inputs.n }}"}}],
                  triggers=[{"event": "cli.tested", "inputs": {"n": "${{ event.n }}"}}])
    kubectl("apply", "-f", "-", stdin=as_json(wf))
    eventually(lambda: "Trigger bindings synced patterns=['cli.tested']" in operator.tail(400),
               30, what="the trigger to be bound")
    published = cli("publish", "cli.tested", "--data", '{"n": 7}', "--id", "evt-cli-1",
                    namespaced=False)
    assert published.returncode == 0, published.stderr
    assert published.stdout.strip() == "published cli.tested id=evt-cli-1"
    runs = eventually(lambda: json.loads(cli("list", "-o", "json").stdout), 30,
                      what="a run started by the event")
    assert "evt-cli-1" in runs[0]["metadata"]["name"] and runs[0]["spec"]["inputs"] == {"n": 7}
    nobody = f"nobody.{uuid.uuid4().hex[:8]}"
    _one_line_error(cli("publish", nobody, namespaced=False), 1, "no queue is bound")


def test_dlq_list_leaves_dead_letters_and_replay_moves_them_back(cli, amqp_url, namespace):
    queue = names.queue_name(namespace, "wf", "work")
    dead = names.dead_letter_queue(queue)
    with Admin(BrokerSettings(amqp_url)) as admin:
        admin.declare_task_queue(queue, 5)
        connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
        try:
            channel = connection.channel()
            channel.confirm_delivery()
            for i in range(3):
                channel.basic_publish("", dead, json.dumps({"v": 9, "attemptId": f"u/t/{i}"}),
                                      pika.BasicProperties(
                                          message_id=f"m{i}", delivery_mode=2, headers={
                                              "x-conveyor-reason": "unsupported-version",
                                              "x-conveyor-detail": "v=9"}))
        finally:
            connection.close()
        for _ in range(2):  # listing twice shows the same: nothing was consumed
            listed = cli("dlq", "list", "work", "--workflow", "wf")
            assert listed.returncode == 0, listed.stderr
            rows = listed.stdout.splitlines()
            assert rows[0].split() == ["MESSAGE-ID", "REASON", "DEATHS", "ATTEMPT", "DETAIL"]
            assert [r.split()[:2] for r in rows[1:]] == [[f"m{i}", "unsupported-version"]
                                                         for i in range(3)]
        as_json_out = json.loads(cli("dlq", "list", "work", "-w", "wf", "-o", "json").stdout)
        assert as_json_out[0]["body"] == {"v": 9, "attemptId": "u/t/0"}
        assert as_json_out[0]["attemptId"] == "u/t/0"
        replayed = cli("dlq", "replay", "work", "--workflow", "wf")
        assert replayed.returncode == 0, replayed.stderr
        assert f"replayed 3 message(s) from {dead} to {queue}" in replayed.stdout
        eventually(lambda: admin.inspect(queue).backlog == 3, 10, what="the replayed messages")
        assert admin.inspect(dead).backlog == 0
        assert "no dead letters" in cli("dlq", "list", "work", "-w", "wf").stdout
        _one_line_error(cli("dlq", "list", "other", "-w", "wf"), 3, "no dead-letter queue")
        admin.delete_task_queue(queue)
