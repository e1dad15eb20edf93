"""Session fixtures: the test bed (or the cluster KUBECONFIG names), a vhost per session and
a namespace per test.

Set CONVEYOR_TEST_USE_KUBECONFIG=1 to run against the cluster that KUBECONFIG names and the
broker that CONVEYOR_AMQP_URL names instead of the local test bed; the TLS tests then need
CONVEYOR_AMQPS_URL and CONVEYOR_AMQP_CA_FILE too (they skip without).
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from kubernetes import client, config

from conveyor.kafka import KafkaSettings
from conveyor.store import StoreSettings, StoreSettingsError
from testbed import kafka, objectstore, pki, rabbitmq
from testbed.layout import paths, ports

# Property tests run the same examples on every machine and in CI: derandomized, so a failure
# reproduces and the suite's time is stable; no deadline, since a shared 2-core machine makes
# one example's wall time meaningless (tests that bound time read the thread's CPU clock).
settings.register_profile(
    "conveyor", derandomize=True, deadline=None, database=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.large_base_example])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "conveyor"))

REPO = Path(__file__).resolve().parents[1]
HACK = REPO / "hack"


@dataclass(frozen=True)
class Cluster:
    kubeconfig: Path
    amqp_url: str
    bin_dir: Path | None  # kubectl's folder, when the test bed built it

    def env(self) -> dict[str, str]:
        """Environment for a subprocess (kubectl, the CLI) that talks to this cluster."""
        env = dict(os.environ, KUBECONFIG=str(self.kubeconfig), CONVEYOR_AMQP_URL=self.amqp_url)
        if self.bin_dir is not None:
            env["PATH"] = f"{self.bin_dir}{os.pathsep}{env['PATH']}"
        return env


def _external() -> bool:
    return os.environ.get("CONVEYOR_TEST_USE_KUBECONFIG") == "1"


def _testbed(*args: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "testbed", *args],
        env=dict(os.environ, PYTHONPATH=str(HACK)), check=True, stdout=subprocess.PIPE,
        text=True,
    ).stdout


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    """The cluster under test; the local test bed is brought up once (idempotent)."""
    if _external():
        kubeconfig = os.environ.get("KUBECONFIG")
        amqp = os.environ.get("CONVEYOR_AMQP_URL")
        if not kubeconfig or not amqp:
            pytest.exit("CONVEYOR_TEST_USE_KUBECONFIG=1 needs KUBECONFIG and CONVEYOR_AMQP_URL",
                        returncode=2)
        return Cluster(Path(kubeconfig), amqp, None)
    _testbed("up")
    exports = dict(
        line.removeprefix("export ").split("=", 1) for line in _testbed("env").splitlines()
    )
    bin_dir = Path(exports["PATH"].strip('"').split(":", 1)[0])
    return Cluster(Path(exports["KUBECONFIG"]), exports["CONVEYOR_AMQP_URL"].strip("'"), bin_dir)


@pytest.fixture(scope="session")
def amqp_url(cluster: Cluster) -> Iterator[str]:
    """A vhost of this test session's own, so runs never see each other's queues."""
    if _external():
        yield cluster.amqp_url
        return
    vhost = f"test-{secrets.token_hex(4)}"
    url = rabbitmq.add_vhost(paths(), ports(), vhost)
    yield url
    rabbitmq.delete_vhost(paths(), ports(), vhost)


@dataclass(frozen=True)
class BrokerTLS:
    """The broker's TLS listener, on the session's vhost."""

    url: str
    """amqps:// by a name the broker's certificate carries."""
    ca_file: Path
    """The CA that signed the broker's certificate."""
    wrong_ca_file: Path
    """A CA that did not."""


@pytest.fixture(scope="session")
def broker_tls(amqp_url: str, tmp_path_factory: pytest.TempPathFactory) -> BrokerTLS:
    other = tmp_path_factory.mktemp("other-ca")
    pki.ensure_broker(other)  # a CA of its own, never the broker's
    if _external():
        url, ca = os.environ.get("CONVEYOR_AMQPS_URL"), os.environ.get("CONVEYOR_AMQP_CA_FILE")
        if not url or not ca:
            pytest.skip("needs CONVEYOR_AMQPS_URL and CONVEYOR_AMQP_CA_FILE")
        return BrokerTLS(url, Path(ca), other / "amqp-ca.crt")
    path = urllib.parse.urlsplit(amqp_url).path
    vhost = urllib.parse.unquote(path[1:]) if len(path) > 1 else "/"
    return BrokerTLS(rabbitmq.amqps_url(paths(), ports(), vhost), paths().amqp_ca,
                     other / "amqp-ca.crt")


@pytest.fixture(scope="session")
def api_client(cluster: Cluster):  # type: ignore[no-untyped-def]
    return config.new_client_from_config(config_file=str(cluster.kubeconfig))


@pytest.fixture
def namespace(api_client, request: pytest.FixtureRequest) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A fresh namespace per test, deleted afterwards (without waiting for it to go)."""
    core = client.CoreV1Api(api_client)
    stem = "".join(ch if ch.isalnum() else "-" for ch in request.node.name.lower())[:40]
    name = f"t-{stem.strip('-')}-{secrets.token_hex(3)}"
    core.create_namespace({"metadata": {"name": name, "labels": {"conveyor.dev/test": "true"}}})
    yield name
    core.delete_namespace(name, propagation_policy="Background")


@pytest.fixture(scope="session")
def kafka_settings(cluster: Cluster) -> KafkaSettings:
    """The test bed's Kafka broker (plain listener). External mode reads
    CONVEYOR_KAFKA_BOOTSTRAP_SERVERS (and the rest of CONVEYOR_KAFKA_*), and skips without."""
    if _external():
        settings = KafkaSettings.from_env(os.environ)
        if settings is None:
            pytest.skip("needs CONVEYOR_KAFKA_BOOTSTRAP_SERVERS")
        return settings
    return KafkaSettings(kafka.bootstrap(ports()))


@pytest.fixture(scope="session")
def store_settings(cluster: Cluster) -> Iterator[StoreSettings]:
    """The test bed's object store with a bucket of this session's own, emptied and deleted
    afterwards. External mode (CONVEYOR_TEST_USE_KUBECONFIG=1) reads CONVEYOR_S3_* and needs
    CONVEYOR_S3_BUCKET to name an existing bucket; the tests then use a prefix of their own."""
    if _external():
        try:
            settings = StoreSettings.from_env()
        except StoreSettingsError as error:
            pytest.skip(f"the object store is not configured: {error}")
        yield dataclasses.replace(settings, prefix=f"{settings.prefix}test-{secrets.token_hex(4)}/")
        return
    bucket = f"test-{secrets.token_hex(4)}"
    s3 = objectstore.client(paths(), ports())
    s3.create_bucket(Bucket=bucket)
    env = objectstore.env_vars(paths(), ports())
    yield StoreSettings.from_env({**env, "CONVEYOR_S3_BUCKET": bucket})
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            s3.delete_object(Bucket=bucket, Key=item["Key"])
    s3.delete_bucket(Bucket=bucket)
    s3.close()
