"""Least privilege, shown by trying: the chart's RBAC installed on the cluster, a token of the
operator's ServiceAccount from the TokenRequest API, and every way an answer could carry a
Secret's data tried with it. And the chart's NetworkPolicies, accepted by the API server.

The test bed has no network plugin, so nothing enforces a NetworkPolicy there: these tests show
the policies render from the live cluster and the API server takes them, not that they block
traffic (docs/operating.md, "Network").

The operator's own calls succeeding under that token, end to end, is
tests/e2e/test_secrets_stay_secret.py: it runs the operator with nothing else.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import ssl
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from conveyor import names
from conveyor.children import Owner, amqp_secret, amqp_secret_name
from conveyor.kube import Kube, KubeError
from support.accounts import client_as, service_account_token
from support.helm import CHART, helm, release, set_args
from support.waiting import eventually
from support.workflows import workflow

pytestmark = pytest.mark.e2e

USER_SECRET = "database"
STAND_IN = "192.0.2.10"  # TEST-NET-1: an address that is never anyone's


@dataclass
class Answer:
    status: int
    body: str


@dataclass
class Caller:
    """Raw HTTP calls with a bearer token: what comes back is exactly what the API server
    answered, with no client in between that could hide a body."""

    host: str
    token: str
    context: ssl.SSLContext

    def call(self, method: str, path: str, body: Any = None,
             content_type: str = "application/json") -> Answer:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.host + path, data=data, method=method, headers={
            "Authorization": f"Bearer {self.token}", "Content-Type": content_type,
            "Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, context=self.context, timeout=10) as response:
                return Answer(response.status, response.read().decode(errors="replace"))
        except urllib.error.HTTPError as error:
            return Answer(error.code, error.read().decode(errors="replace"))


def _caller(api_client: Any, token: str) -> Caller:
    config = api_client.configuration
    context = ssl.create_default_context(cafile=config.ssl_ca_cert)
    if not config.verify_ssl:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return Caller(config.host, token, context)


def _reads(caller: Caller, namespace: str, name: str) -> dict[str, Answer]:
    """Every call whose answer could carry the Secret `namespace/name`: the reads, and the
    writes that answer with the object they touched (a PATCH, even an empty one)."""
    one = f"/api/v1/namespaces/{namespace}/secrets/{name}"
    every = f"/api/v1/namespaces/{namespace}/secrets"
    return {
        "get": caller.call("GET", one),
        "list": caller.call("GET", every),
        "list in every namespace": caller.call("GET", "/api/v1/secrets"),
        "watch": caller.call("GET", every + "?watch=1&timeoutSeconds=1"),
        "empty merge patch": caller.call("PATCH", one, {}, "application/merge-patch+json"),
        "empty JSON patch": caller.call("PATCH", one, [], "application/json-patch+json"),
        "server-side apply": caller.call(
            "PATCH", one + "?fieldManager=probe",
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}},
            "application/apply-patch+yaml"),
    }


def _assert_forbidden(answers: dict[str, Answer], value: str, where: str) -> None:
    """Every answer a 403 that does not carry `value`. Only booleans reach the assertion, so a
    failure never prints the secret (pytest shows the operands it compared)."""
    for how, answer in answers.items():
        forbidden, leaked = answer.status == 403, _carries(answer, value)
        assert forbidden and not leaked, (
            f"{how} of a Secret in {where}: HTTP {answer.status}, "
            f"{'the value is in the answer' if leaked else 'no value in the answer'}")


def _carries(answer: Answer, value: str) -> bool:
    """Whether the answer holds `value`, as text or base64 (a Secret's `data`)."""
    return value in answer.body or base64.b64encode(value.encode()).decode() in answer.body


@pytest.fixture
def user_namespace(api_client: Any) -> Iterator[str]:
    """A namespace the operator does not watch, as a user's team would have."""
    core = client.CoreV1Api(api_client)
    name = f"t-user-{secrets.token_hex(3)}"
    core.create_namespace({"metadata": {"name": name, "labels": {"conveyor.dev/test": "true"}}})
    yield name
    core.delete_namespace(name, propagation_policy="Background")


def _user_secret(api_client: Any, namespace: str) -> str:
    value = f"hunter-{secrets.token_hex(8)}"
    client.CoreV1Api(api_client).create_namespaced_secret(namespace, {
        "metadata": {"name": USER_SECRET}, "stringData": {"password": value}})
    return value


def _workflow(api_client: Any, namespace: str) -> Owner:
    """A Workflow (no operator runs here to act on it) to own the broker Secret."""
    made = client.CustomObjectsApi(api_client).create_namespaced_custom_object(
        names.GROUP, names.VERSION, namespace, names.WORKFLOW_PLURAL,
        workflow("wf", [{"name": "a", "type": "work"}]))
    return Owner(namespace, "wf", made["metadata"]["uid"])


def _values(amqp_url: str, watched: list[str], **more: Any) -> dict[str, Any]:
    """The chart's RBAC with no operator pod: the test acts as its ServiceAccount itself."""
    return {"replicaCount": 0, "crds": {"enabled": False},
            "rbac": {"create": True, "userRoles": False},
            "operator": {"namespaces": watched}, "amqp": {"url": amqp_url}, **more}


def _token_secret(caller: Caller, namespace: str) -> Answer:
    """Ask for a legacy token Secret of the namespace's default ServiceAccount: the token
    controller fills one in for whoever may create Secrets."""
    return caller.call("POST", f"/api/v1/namespaces/{namespace}/secrets", {
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
        "metadata": {"name": "minted", "annotations": {
            "kubernetes.io/service-account.name": "default"}}})


def _filled_token(api_client: Any, namespace: str) -> str:
    def token() -> str:
        found = client.CoreV1Api(api_client).read_namespaced_secret("minted", namespace)
        return base64.b64decode((found.data or {}).get("token", "")).decode()

    return eventually(token, 30, interval=0.2, what="the token controller to fill the Secret")


@pytest.mark.parametrize("every_namespace", [False, True], ids=["a-list", "every-namespace"])
def test_the_operators_account_reads_no_secret_yet_writes_its_own(
        every_namespace: bool, cluster: Any, api_client: Any, namespace: str,
        user_namespace: str, amqp_url: str, crds: None, tmp_path: Path) -> None:
    values = _values(amqp_url, [] if every_namespace else [namespace])
    with release(f"pv-{secrets.token_hex(3)}", namespace, values, cluster.env(),
                 tmp_path / "values.yaml") as fullname:
        token = service_account_token(api_client, namespace, fullname)
        caller = _caller(api_client, token)
        kube = Kube(client_as(api_client, token))

        # A user's Secret: in a namespace the operator does not watch (or does, watching
        # every one), and in the one it watches.
        for where in (user_namespace, namespace):
            value = _user_secret(api_client, where)
            _assert_forbidden(_reads(caller, where, USER_SECRET), value, where)

        # What it needs: its broker Secret for the workers, created, then replaced with a new
        # URL; without ever being able to read it back, not even its own.
        owner = _workflow(api_client, namespace)  # the Secret's owner: it must exist, or the
        # garbage collector deletes what it owns at once
        kube.apply_secret(amqp_secret(owner, "amqp://conveyor:first@broker/"))
        kube.apply_secret(amqp_secret(owner, "amqp://conveyor:second@broker/"))
        stored = client.CoreV1Api(api_client).read_namespaced_secret(
            amqp_secret_name("wf"), namespace)
        assert base64.b64decode(stored.data["url"]) == b"amqp://conveyor:second@broker/"
        _assert_forbidden(_reads(caller, namespace, amqp_secret_name("wf")),
                          "amqp://conveyor:second@broker/", "the watched namespace")
        elsewhere = Owner(user_namespace, "wf", owner.uid)
        if every_namespace:
            kube.apply_secret(amqp_secret(elsewhere, "amqp://conveyor:third@broker/"))
        else:
            with pytest.raises(KubeError) as refused:
                kube.apply_secret(amqp_secret(elsewhere, "amqp://conveyor:third@broker/"))
            assert refused.value.status == 403

        # Minting a ServiceAccount's token: a create cannot be limited by name, so it may ask
        # for a token Secret; the controller fills it in, and no call lets it read it.
        created = _token_secret(caller, namespace)
        assert created.status == 201, created.body
        minted = _filled_token(api_client, namespace)
        answers = _reads(caller, namespace, "minted")
        _assert_forbidden(answers, minted, "the watched namespace (a minted token)")
        replaced = caller.call("PUT", f"/api/v1/namespaces/{namespace}/secrets/minted", {
            "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
            "metadata": {"name": "minted", "annotations": {
                "kubernetes.io/service-account.name": "default"}}})
        replaced_it, leaked = replaced.status == 200, _carries(replaced, minted)
        assert replaced_it and not leaked  # a replace answers with what was sent, no more

        # The leader Lease: its own, by name; not another controller's beside it.
        lease = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
        assert caller.call("GET", f"{lease}/{fullname}").status == 200
        client.CoordinationV1Api(api_client).create_namespaced_lease(namespace, {
            "metadata": {"name": "someone-else"}, "spec": {"holderIdentity": "them"}})
        assert caller.call("GET", f"{lease}/someone-else").status == 403
        assert caller.call("PUT", f"{lease}/someone-else", {
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "someone-else"}, "spec": {"holderIdentity": "us"}}).status == 403


# -- the admission policy: what RBAC cannot narrow ---------------------------------------------


def test_with_the_admission_policy_the_operator_writes_only_what_it_made(
        cluster: Any, api_client: Any, namespace: str, amqp_url: str, crds: None,
        tmp_path: Path) -> None:
    values = _values(amqp_url, [namespace], admissionPolicy={"enabled": True})
    core = client.CoreV1Api(api_client)
    with release(f"pa-{secrets.token_hex(3)}", namespace, values, cluster.env(),
                 tmp_path / "values.yaml") as fullname:
        token = service_account_token(api_client, namespace, fullname)
        caller = _caller(api_client, token)
        kube = Kube(client_as(api_client, token))
        secrets_path = f"/api/v1/namespaces/{namespace}/secrets"
        maps_path = f"/api/v1/namespaces/{namespace}/configmaps"
        unlabelled = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "database"},
                      "stringData": {"password": "ours now"}}

        def refused(answer: Answer) -> bool:
            return answer.status in (403, 422) and "Conveyor operator" in answer.body

        # RBAC lets it create Secrets; the policy, only its own broker Secrets. A policy is
        # enforced once the API server has loaded it: poll until it refuses.
        eventually(lambda: refused(caller.call("POST", secrets_path, unlabelled)), 30,
                   interval=0.3, what="the policy to refuse a Secret the operator did not make")
        labelled = {**unlabelled, "metadata": {"name": "database", "labels": {
            "app.kubernetes.io/managed-by": "conveyor-operator"}}}
        assert refused(caller.call("POST", secrets_path, labelled))  # labelled, wrong name
        owner = _workflow(api_client, namespace)
        kube.apply_secret(amqp_secret(owner, "amqp://conveyor:first@broker/"))  # its own
        kube.apply_secret(amqp_secret(owner, "amqp://conveyor:second@broker/"))
        # A user's ConfigMap: not created, and not taken over by relabelling it.
        assert refused(caller.call("POST", maps_path, {
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}}))
        core.create_namespaced_config_map(namespace, {"metadata": {"name": "theirs"},
                                                      "data": {"k": "v"}})
        assert refused(caller.call("PATCH", f"{maps_path}/theirs", {
            "metadata": {"labels": {"app.kubernetes.io/managed-by": "conveyor-operator"}},
            "data": {"k": "ours"}}, content_type="application/merge-patch+json"))
        assert core.read_namespaced_config_map("theirs", namespace).data == {"k": "v"}


# -- NetworkPolicies --------------------------------------------------------------------------


@pytest.fixture
def api_endpoints(api_client: Any) -> Iterator[list[str]]:
    """The addresses behind Service default/kubernetes, as a real cluster has them. The test
    bed runs its API server without the endpoint reconciler, so there the test writes the
    EndpointSlice a cluster would have and removes it after; its address is a documentation
    one (192.0.2.0/24, RFC 5737) standing in for the real one, loopback, which EndpointSlices
    refuse. Nothing is sent to it: the chart only reads it."""
    discovery = client.DiscoveryV1Api(api_client)
    try:
        found = discovery.read_namespaced_endpoint_slice("kubernetes", "default")
        yield [a for e in found.endpoints or [] for a in e.addresses]
        return
    except ApiException as error:
        if error.status != 404 or os.environ.get("CONVEYOR_TEST_USE_KUBECONFIG") == "1":
            raise
    server = urllib.parse.urlsplit(api_client.configuration.host)
    discovery.create_namespaced_endpoint_slice("default", {
        "metadata": {"name": "kubernetes",
                     "labels": {"kubernetes.io/service-name": "kubernetes"}},
        "addressType": "IPv4", "endpoints": [{"addresses": [STAND_IN]}],
        "ports": [{"name": "https", "port": server.port, "protocol": "TCP"}]})
    try:
        yield [STAND_IN]
    finally:
        discovery.delete_namespaced_endpoint_slice("kubernetes", "default")


def _kubectl(cluster: Any, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run(["kubectl", *args], env=cluster.env(), input=stdin,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_policies_take_the_api_server_from_the_cluster_and_are_accepted(
        cluster: Any, api_client: Any, namespace: str, amqp_url: str, crds: None,
        api_endpoints: list[str], tmp_path: Path) -> None:
    service = client.CoreV1Api(api_client).read_namespaced_service("kubernetes", "default")
    server_port = urllib.parse.urlsplit(api_client.configuration.host).port
    monitoring = [{"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "monitoring"}}}]
    values = _values(amqp_url, [namespace], networkPolicy={
        "enabled": True, "broker": {"cidrs": ["127.0.0.1/32"]}, "metricsFrom": monitoring})
    with release(f"np-{secrets.token_hex(3)}", namespace, values, cluster.env(),
                 tmp_path / "values.yaml") as fullname:
        policy = json.loads(_kubectl(cluster, "-n", namespace, "get", "networkpolicy",
                                     fullname, "-o", "json"))
    api = policy["spec"]["egress"][0]
    cidrs = {peer["ipBlock"]["cidr"] for peer in api["to"]}
    assert cidrs == {f"{service.spec.cluster_ip}/32", *(f"{a}/32" for a in api_endpoints)}
    ports = {p["port"] for p in api["ports"]}
    assert {p.port for p in service.spec.ports} <= ports and server_port in ports
    assert policy["spec"]["ingress"] == [{"from": monitoring, "ports": [
        {"protocol": "TCP", "port": 8080}]}]

    # The bundled broker's variant, through the API server's own validation (no pods: its
    # image cannot run on the test bed).
    rendered = helm("template", "np", str(CHART), "--namespace", namespace, *set_args({
        "rabbitmq.enabled": True, "operator.namespaces": [namespace],
        "networkPolicy.enabled": True, "networkPolicy.apiServer.cidrs": ["10.0.0.1/32"],
        "networkPolicy.apiServer.ports": [443],
        "networkPolicy.rabbitmq.managementFrom": monitoring})).stdout
    policies = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "NetworkPolicy"]
    assert len(policies) == 2
    out = _kubectl(cluster, "-n", namespace, "apply", "--dry-run=server", "-f", "-",
                   stdin=yaml.safe_dump_all(policies))
    assert out.count("created (server dry run)") == 2, out
