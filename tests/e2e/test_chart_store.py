"""`helm install` with the bundled object store (store.bundled.enabled): the in-memory server
runs from the chart's arguments on its pod's address, with its bucket made and the generated
key pair from its Secret; the operator runs under the chart with the store in its
environment, and the example Workflow's worker pools get the store's place and keys by
reference.

On the test bed the server's container runs the cached conveyor-s3 binary as a local process
(no images there). Service names do not resolve on the test bed (no cluster DNS), so the test
reaches the server at its pod's address, as its Service would."""

from __future__ import annotations

import base64
import json

import boto3
import botocore.config
import pytest

from conveyor.children import amqp_secret_name
from e2e.test_chart import EXAMPLES, Release, _operator_values, example_pools, release
from support.kube import local_testbed_only
from support.waiting import eventually
from testbed import objectstore

pytestmark = [pytest.mark.e2e, local_testbed_only]
__all__ = ["release"]  # the fixture, from test_chart


def test_the_bundled_store_serves_its_bucket_and_the_workers_get_it(
        release: Release, amqp_url: str, namespace: str) -> None:
    values = _operator_values(amqp_url, namespace)
    values["store"] = {"bundled": {"enabled": True, "command": [str(objectstore.binary())]}}
    release.adopt_crds()
    release.install(values)
    store = f"{release.name}-conveyor-store"
    try:
        [pod] = json.loads(release.kubectl(
            "-n", namespace, "get", "pods", "-l",
            f"app.kubernetes.io/name=conveyor-s3,app.kubernetes.io/instance={release.name}",
            "-o", "json"))["items"]
        keys = {k: base64.b64decode(val).decode() for k, val in json.loads(release.kubectl(
            "-n", namespace, "get", "secret", store, "-o", "json"))["data"].items()}
        s3 = boto3.session.Session().client(
            "s3", endpoint_url=f"http://{pod['status']['podIP']}:9000", region_name="us-east-1",
            aws_access_key_id=keys["accessKey"], aws_secret_access_key=keys["secretKey"],
            config=botocore.config.Config(s3={"addressing_style": "path"},
                                          retries={"total_max_attempts": 1}))
        assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["conveyor"]
        s3.put_object(Bucket="conveyor", Key="probe", Body=b"1")
        assert s3.get_object(Bucket="conveyor", Key="probe")["Body"].read() == b"1"
        s3.close()

        # The Workflow only, not its run: the operator (a process here) would write the run's
        # forEach outputs to the store by its Service name, which nothing resolves on the
        # test bed. On a cluster the run goes through (the store at scale is
        # test_operator_store.py's, with the store on loopback).
        release.kubectl("-n", namespace, "apply", "-f", str(EXAMPLES / "order-fulfilment.yaml"))
        eventually(lambda: release.kubectl(
            "-n", namespace, "get", "cwf", "order-fulfilment", "-o",
            "jsonpath={.status.conditions[?(@.type=='Ready')].status}") == "True", 120,
            interval=0.5, what="the example Workflow Ready")
        for pool in example_pools(release, namespace):
            env = {e["name"]: e.get("value", e.get("valueFrom")) for e in
                   pool["spec"]["template"]["spec"]["containers"][0]["env"]}
            assert env["CONVEYOR_S3_ENDPOINT"] == f"http://{store}.{namespace}.svc:9000"
            assert env["CONVEYOR_S3_BUCKET"] == "conveyor"
            assert env["CONVEYOR_S3_SECRET_KEY"] == {"secretKeyRef": {
                "name": amqp_secret_name("order-fulfilment"), "key": "CONVEYOR_S3_SECRET_KEY"}}
            assert keys["secretKey"] not in json.dumps(pool)
        # The bundled store has one key pair: the workers share it, and the operator says so.
        assert "Workers share the operator's object store credentials" in release.operator_log()
    except AssertionError:
        print(f"--- operator log ---\n{release.operator_log()}")
        raise
