"""The node agent behaves like a kubelet where the tests depend on it: env resolution, Secret
and ConfigMap volumes, missing commands, restart policies, exit codes and restart counts,
CrashLoopBackOff, deletion with a grace period."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from kubernetes import client

from support.kube import container_state, local_testbed_only, pod_manifest, python_container
from support.waiting import eventually
from testbed import parts, procs
from testbed.layout import paths

pytestmark = [pytest.mark.e2e, local_testbed_only]

ENV_SCRIPT = textwrap.dedent("""
    import json, os, pathlib
    keys = ["LITERAL", "EXPANDED", "FROM_SECRET", "FROM_CONFIGMAP", "POD_NAME", "POD_IP",
            "CFG_colour", "KUBECONFIG"]
    pathlib.Path(os.environ["OUT"]).write_text(json.dumps({k: os.environ.get(k) for k in keys}))
""")


def _pod(core: client.CoreV1Api, namespace: str, name: str):  # type: ignore[no-untyped-def]
    return core.read_namespaced_pod(name, namespace)


def test_env_comes_from_literals_secrets_configmaps_and_the_downward_api(
    api_client, namespace, tmp_path: Path
):
    core = client.CoreV1Api(api_client)
    core.create_namespaced_secret(namespace, {
        "metadata": {"name": "creds"},
        "data": {"password": base64.b64encode(b"s3cret").decode()},
    })
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "settings"},
                                                  "data": {"colour": "blue"}})
    out = tmp_path / "env.json"
    env = [
        {"name": "OUT", "value": str(out)},
        {"name": "LITERAL", "value": "plain"},
        {"name": "EXPANDED", "value": "$(LITERAL)-and-more"},
        {"name": "FROM_SECRET", "valueFrom": {"secretKeyRef": {"name": "creds",
                                                               "key": "password"}}},
        {"name": "FROM_CONFIGMAP", "valueFrom": {"configMapKeyRef": {"name": "settings",
                                                                     "key": "colour"}}},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
    ]
    core.create_namespaced_pod(namespace, pod_manifest(
        "env", [python_container("main", ENV_SCRIPT, env=env,
                                 envFrom=[{"prefix": "CFG_",
                                           "configMapRef": {"name": "settings"}}])],
        restartPolicy="Never",
    ))
    eventually(lambda: _pod(core, namespace, "env").status.phase == "Succeeded", 60,
               what="the env pod to succeed")
    seen = json.loads(out.read_text())
    pod = _pod(core, namespace, "env")
    assert seen["LITERAL"] == "plain"
    assert seen["EXPANDED"] == "plain-and-more"
    assert seen["FROM_SECRET"] == "s3cret"
    assert seen["FROM_CONFIGMAP"] == "blue"
    assert seen["CFG_colour"] == "blue"
    assert seen["POD_NAME"] == "env"
    assert seen["POD_IP"] == pod.status.pod_ip and seen["POD_IP"].startswith("127.")
    assert seen["KUBECONFIG"] and "admin" not in Path(seen["KUBECONFIG"]).read_text()


VOLUME_SCRIPT = textwrap.dedent("""
    import json, os, pathlib
    ca = pathlib.Path("/etc/conveyor/amqp/ca.crt")
    try:
        ca.with_name("written").write_text("x")
        writable = True
    except OSError:
        writable = False
    pathlib.Path(os.environ["OUT"]).write_text(json.dumps({
        "ca": ca.read_text(), "listing": sorted(os.listdir(ca.parent)),
        "colour": pathlib.Path("/etc/conveyor/settings/colour").read_text(),
        "writable": writable}))
""")


def test_secret_and_configmap_volumes_are_mounted_where_the_pod_says_and_nowhere_else(
    api_client, namespace, tmp_path: Path
):
    core = client.CoreV1Api(api_client)
    core.create_namespaced_secret(namespace, {"metadata": {"name": "amqp"}, "stringData": {
        "url": "amqps://u:s3cret@h/", "ca.crt": "PEM TEXT\n"}})
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "settings"},
                                                  "data": {"colour": "blue"}})
    out = tmp_path / "volumes.json"
    container = python_container("main", VOLUME_SCRIPT, env=[{"name": "OUT", "value": str(out)}],
                                 volumeMounts=[
                                     {"name": "ca", "mountPath": "/etc/conveyor/amqp",
                                      "readOnly": True},
                                     {"name": "settings", "mountPath": "/etc/conveyor/settings"}])
    core.create_namespaced_pod(namespace, pod_manifest(
        "volumes", [container], restartPolicy="Never", volumes=[
            {"name": "ca", "secret": {"secretName": "amqp",
                                      "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"name": "settings", "configMap": {"name": "settings"}}]))
    eventually(lambda: _pod(core, namespace, "volumes").status.phase in ("Succeeded", "Failed"),
               60, what="the volume pod to end")
    assert _pod(core, namespace, "volumes").status.phase == "Succeeded"
    seen = json.loads(out.read_text())
    assert seen["ca"] == "PEM TEXT\n"
    assert seen["listing"] == ["ca.crt"], "only the item asked for: not the URL"
    assert seen["colour"] == "blue"
    assert seen["writable"] is False, "a readOnly mount is read-only"
    assert not Path("/etc/conveyor").exists(), "the host's filesystem is left alone"


def test_a_missing_secret_holds_the_container_with_a_config_error(api_client, namespace):
    core = client.CoreV1Api(api_client)
    core.create_namespaced_pod(namespace, pod_manifest("waits", [python_container(
        "main", "print('never')",
        env=[{"name": "X", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k"}}}],
    )]))

    def waiting_reason():  # type: ignore[no-untyped-def]
        state = container_state(_pod(core, namespace, "waits"))
        return state and state.state.waiting and state.state.waiting

    waiting = eventually(waiting_reason, 60, what="a waiting state with a reason")
    eventually(lambda: (waiting_reason() or waiting).reason == "CreateContainerConfigError", 30,
               what="CreateContainerConfigError")
    assert 'secret "absent" not found' in waiting_reason().message


def test_a_container_without_a_command_says_why_it_cannot_run(api_client, namespace):
    core = client.CoreV1Api(api_client)
    core.create_namespaced_pod(namespace, pod_manifest(
        "imageonly", [{"name": "main", "image": "example.com/app:1"}]))

    def reason() -> str | None:
        state = container_state(_pod(core, namespace, "imageonly"))
        waiting = state and state.state.waiting
        return waiting.reason if waiting else None

    eventually(lambda: reason() == "NoCommand", 60, what="reason NoCommand")
    pod = _pod(core, namespace, "imageonly")
    assert pod.status.phase == "Pending"
    assert "set the container's command" in container_state(pod).state.waiting.message


def test_restart_policies_exit_codes_and_restart_counts(api_client, namespace):
    core = client.CoreV1Api(api_client)
    core.create_namespaced_pod(namespace, pod_manifest(
        "never", [python_container("main", "raise SystemExit(7)")], restartPolicy="Never"))
    core.create_namespaced_pod(namespace, pod_manifest(
        "onfailure", [python_container("main", "raise SystemExit(3)")],
        restartPolicy="OnFailure"))

    never = eventually(lambda: (p := _pod(core, namespace, "never")).status.phase == "Failed"
                       and p, 60, what="the Never pod to fail")
    terminated = container_state(never).state.terminated
    assert terminated.exit_code == 7 and terminated.reason == "Error"
    assert container_state(never).restart_count == 0

    def restarted_twice():  # type: ignore[no-untyped-def]
        state = container_state(_pod(core, namespace, "onfailure"))
        return state if state and state.restart_count >= 2 else None

    state = eventually(restarted_twice, 60, what="two restarts under OnFailure")
    assert state.last_state.terminated.exit_code == 3
    assert _pod(core, namespace, "onfailure").status.phase == "Running"


def test_a_crashing_container_waits_in_crash_loop_back_off_as_a_kubelet_says_it(
        api_client, namespace):
    """The kubelet's shape: state.waiting CrashLoopBackOff with "back-off Ns restarting failed
    container=C pod=NAME_NS(UID)", lastState.terminated the exit just seen."""
    core = client.CoreV1Api(api_client)
    created = core.create_namespaced_pod(namespace, pod_manifest(
        "crashing", [python_container("main", "raise SystemExit(4)")]))

    def backing_off():  # type: ignore[no-untyped-def]
        state = container_state(_pod(core, namespace, "crashing"))
        waiting = state.state.waiting if state else None
        return state if waiting and waiting.reason == "CrashLoopBackOff" else None

    state = eventually(backing_off, 60, interval=0.05, what="CrashLoopBackOff")
    message = state.state.waiting.message
    assert message.startswith("back-off ") and message.endswith(
        f"s restarting failed container=main pod=crashing_{namespace}({created.metadata.uid})")
    assert state.last_state.terminated.exit_code == 4
    assert state.last_state.terminated.reason == "Error"


GRACE_SCRIPT = textwrap.dedent("""
    import os, pathlib, signal, time
    out = pathlib.Path(os.environ["OUT"])
    signal.signal(signal.SIGTERM, lambda *_: out.write_text("ignored SIGTERM"))
    out.write_text(str(os.getpid()))
    while True:
        signal.pause()
""")


def test_deletion_kills_a_process_that_ignores_sigterm_after_the_grace_period(
    api_client, namespace, tmp_path: Path
):
    core = client.CoreV1Api(api_client)
    out = tmp_path / "out"
    core.create_namespaced_pod(namespace, pod_manifest(
        "stubborn", [python_container("main", GRACE_SCRIPT, env=[{"name": "OUT",
                                                                   "value": str(out)}])],
        terminationGracePeriodSeconds=2,
    ))
    pid = int(eventually(lambda: out.exists() and out.read_text().isdigit() and out.read_text(),
                         60, what="the process to start"))
    core.delete_namespaced_pod("stubborn", namespace)
    eventually(lambda: out.read_text() == "ignored SIGTERM", 20, what="SIGTERM first")
    assert Path(f"/proc/{pid}").exists(), "SIGKILL came before the grace period ended"
    eventually(lambda: not Path(f"/proc/{pid}").exists(), 20, what="SIGKILL after the grace")

    def removed() -> bool:
        return not [p for p in core.list_namespaced_pod(namespace).items
                    if p.metadata.name == "stubborn"]

    eventually(removed, 20, what="the pod to be removed")


def test_a_restarted_agent_stops_what_a_killed_one_left_and_runs_the_pod_again(
    api_client, namespace, tmp_path: Path
):
    core = client.CoreV1Api(api_client)
    out = tmp_path / "pids"
    script = ("import os, signal; open(os.environ['OUT'], 'a').write(f'{os.getpid()}\\n'); "
              "signal.pause()")
    core.create_namespaced_pod(namespace, pod_manifest(
        "survivor", [python_container("main", script, env=[{"name": "OUT", "value": str(out)}])]))
    first = int(eventually(lambda: out.exists() and out.read_text().split()[0], 60,
                           what="the first process"))
    agent = procs.running_pid(paths().pids, "nodeagent")
    assert agent is not None
    os.kill(agent, signal.SIGKILL)
    eventually(lambda: procs.running_pid(paths().pids, "nodeagent") is None, 10,
               what="the agent to die")
    assert Path(f"/proc/{first}").exists(), "the container should outlive its killed agent"

    subprocess.run([sys.executable, "-m", "testbed", "up"], check=True,
                   env=dict(os.environ, PYTHONPATH=str(Path(procs.__file__).parents[1])))
    eventually(lambda: not Path(f"/proc/{first}").exists(), 20,
               what="the orphaned process to be stopped")
    pids = eventually(lambda: len(out.read_text().split()) == 2 and out.read_text().split(), 60,
                      what="the pod's container to run again")
    assert Path(f"/proc/{pids[1]}").exists()
    eventually(lambda: _pod(core, namespace, "survivor").status.phase == "Running", 30,
               what="the pod to be Running")


def test_a_container_killed_with_sigkill_is_restarted_under_restart_policy_always(
    api_client, namespace, tmp_path: Path
):
    """What the soak's worker fault relies on: `testbed kill pod/NS/NAME` finds the process
    by the agent's pid file, and the agent restarts it as a kubelet would."""
    core = client.CoreV1Api(api_client)
    out = tmp_path / "pids"
    script = ("import os, signal; open(os.environ['OUT'], 'a').write(f'{os.getpid()}\\n'); "
              "signal.pause()")
    core.create_namespaced_pod(namespace, pod_manifest(
        "sturdy", [python_container("main", script, env=[{"name": "OUT", "value": str(out)}])]))
    first = int(eventually(lambda: out.exists() and out.read_text().split()[0], 60,
                           what="the first process"))

    killed = parts.kill(paths(), f"pod/{namespace}/sturdy")
    assert killed == [first]
    second = eventually(lambda: len(out.read_text().split()) == 2 and out.read_text().split()[1],
                        30, what="the container to be started again")
    assert Path(f"/proc/{second}").exists()

    def restarted():  # type: ignore[no-untyped-def]
        state = container_state(_pod(core, namespace, "sturdy"))
        return state if state and state.restart_count == 1 and state.state.running else None

    state = eventually(restarted, 30, what="restartCount 1 and Running")
    assert state.last_state.terminated.exit_code == 137  # 128 + SIGKILL, as a kubelet says
    assert parts.pod_pids(paths(), f"{namespace}/sturdy") == [int(second)]
