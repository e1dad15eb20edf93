"""The object store as the workers get it from the Workflow reconcile: the worker Secret's keys
(or the operator's own), the store's CA, and a Workflow that is not Ready, saying why, while
the worker Secret cannot be read. Over the fakes of the operator's seams."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest

from conveyor.broker import Admin
from conveyor.broker.settings import BrokerSettings
from conveyor.children import StoreKeys
from conveyor.kube import KubeError
from conveyor.operator.metrics import Metrics
from conveyor.operator.pools import PoolManager
from conveyor.operator.reconcile import Reconciler, StoreUnusable, worker_store
from conveyor.operator.settings import Settings
from conveyor.store.settings import StoreSettings
from testbed import pki
from unit.fakes import NAMESPACE, WORKFLOW, Bed, FakeKube, drive, workflow_body, workflow_spec

T = TypeVar("T")
OPS = "conveyor-system"
WORKER_SECRET = "workers-s3"
STORE = StoreSettings(bucket="runs", access_key="operator", secret_key="operator-s3cret",
                      endpoint="http://s3.example:9000", prefix="conveyor/")


def _settings(store: StoreSettings | None = STORE, worker_secret: str | None = WORKER_SECRET,
              ) -> Settings:
    return Settings(broker=BrokerSettings(url="amqp://u:p@localhost/"), lease_namespace=OPS,
                    store=store, store_worker_secret=worker_secret,
                    store_max_object_bytes=1 << 20)


def _worker_secret(kube: FakeKube, **data: str) -> None:
    kube.secrets[(OPS, WORKER_SECRET)] = {"metadata": {"name": WORKER_SECRET,
                                                       "namespace": OPS}, "stringData": data}


def test_no_store_gives_the_workers_nothing():
    kube = FakeKube()
    assert drive_value(lambda: worker_store(_settings(store=None, worker_secret=None),
                                            kube)) is None
    assert not kube.calls


def test_without_a_worker_secret_workers_get_the_operators_keys():
    kube = FakeKube()
    parts = drive_value(lambda: worker_store(_settings(worker_secret=None), kube))
    assert parts is not None
    assert parts.keys == StoreKeys("operator", "operator-s3cret")
    assert (parts.place.bucket, parts.place.endpoint, parts.place.prefix,
            parts.place.max_object_bytes, parts.place.ca) == (
        "runs", "http://s3.example:9000", "conveyor/", 1 << 20, False)
    assert not kube.calls_of("get_secret_data"), "no Secret to read"


def test_the_worker_secret_is_read_by_name_in_the_operators_namespace():
    kube = FakeKube()
    _worker_secret(kube, accessKey="workers", secretKey="workers-s3cret")
    parts = drive_value(lambda: worker_store(_settings(), kube))
    assert parts is not None and parts.keys == StoreKeys("workers", "workers-s3cret")
    [call] = kube.calls_of("get_secret_data")
    assert call.args == (OPS, WORKER_SECRET)


@pytest.mark.parametrize(("data", "says"), [
    (None, "is not found: create it with keys accessKey and secretKey"),
    ({"accessKey": "key-id-1"}, "has no secretKey"),
    ({"accessKey": "", "secretKey": ""}, "has no accessKey and no secretKey"),
])
def test_a_worker_secret_that_is_missing_or_incomplete_says_what_to_do(
        data: dict[str, str] | None, says: str):
    kube = FakeKube()
    if data is not None:
        _worker_secret(kube, **data)
    with pytest.raises(StoreUnusable) as caught:
        drive_value(lambda: worker_store(_settings(), kube))
    assert caught.value.reason == "StoreCredentialsMissing"
    message = str(caught.value)
    assert f"Secret {OPS}/{WORKER_SECRET} (CONVEYOR_S3_WORKER_SECRET)" in message
    assert says in message
    assert "key-id-1" not in message, "a value of the Secret is never shown"


def test_a_refused_read_names_the_grant_and_other_errors_are_tried_again():
    kube = FakeKube()
    kube.fail_next("get_secret_data", KubeError("get Secret: forbidden", 403))
    with pytest.raises(StoreUnusable, match=r"may not read .* grant it get on that Secret"):
        drive_value(lambda: worker_store(_settings(), kube))
    kube.fail_next("get_secret_data", KubeError("get Secret: etcd leader changed", 500))
    with pytest.raises(KubeError) as caught:
        drive_value(lambda: worker_store(_settings(), kube))
    assert caught.value.status == 500


def test_the_stores_ca_is_read_at_every_call_and_an_unusable_one_is_named(tmp_path: Path):
    one, two = tmp_path / "one", tmp_path / "two"
    for folder in (one, two):  # two CAs of their own, as PEM
        folder.mkdir()
        pki.ensure_broker(folder)
    ca = tmp_path / "s3-ca.pem"
    ca.write_text((one / "amqp-ca.crt").read_text())
    store = StoreSettings(bucket="runs", access_key="a", secret_key="s",
                          endpoint="https://s3.example", ca_file=ca)
    settings = _settings(store=store, worker_secret=None)
    kube = FakeKube()
    parts = drive_value(lambda: worker_store(settings, kube))
    assert parts is not None and parts.ca == ca.read_text() and parts.place.ca
    ca.write_text((two / "amqp-ca.crt").read_text())  # rotated: the next reconcile has it
    parts = drive_value(lambda: worker_store(settings, kube))
    assert parts is not None and parts.ca == (two / "amqp-ca.crt").read_text()
    for text, says in (("", "the file is empty"), ("not a certificate", "")):
        ca.write_text(text)
        with pytest.raises(StoreUnusable, match=f"CA file {ca}: {says}") as caught:
            drive_value(lambda: worker_store(settings, kube))
        assert caught.value.reason == "StoreCAUnreadable"
    ca.unlink()
    with pytest.raises(StoreUnusable, match=f"CA file {ca}: No such file"):
        drive_value(lambda: worker_store(settings, kube))


# -- through the reconcile --------------------------------------------------------------------
class RecordingAdmin:
    """The broker admin calls of a reconcile, recorded (no broker in unit tests)."""

    def __init__(self) -> None:
        self.queues: list[str] = []

    def declare_exchanges(self) -> None:
        pass

    def declare_task_queue(self, queue: str, limit: int) -> None:
        self.queues.append(queue)


class Pools(PoolManager):
    def __init__(self, settings: Settings, bed: Bed) -> None:
        super().__init__(settings, bed.kube, metrics=Metrics(), in_flight=dict,
                         workers=dict)
        self.admin = RecordingAdmin()

    async def admin_call(self, call: Callable[[Admin], T]) -> T:
        return call(cast(Admin, self.admin))


def _ready(kube: FakeKube) -> dict[str, Any]:
    patch = kube.patches[("workflows", NAMESPACE, WORKFLOW)][-1]
    [ready] = [c for c in patch["conditions"] if c["type"] == "Ready"]
    return cast(dict[str, Any], ready)


def test_a_workflow_waits_not_ready_for_the_worker_secret_then_its_workers_get_its_keys():
    async def scenario() -> None:
        bed = Bed()
        settings = _settings()
        pools = Pools(settings, bed)
        reconciler = Reconciler(settings, bed.kube, bed.workflows, pools, bed.manager)
        body = workflow_body(workflow_spec({"name": "a"}))

        await reconciler.reconcile(body)
        ready = _ready(bed.kube)
        assert (ready["status"], ready["reason"]) == ("False", "StoreCredentialsMissing")
        assert f"{OPS}/{WORKER_SECRET}" in ready["message"]
        assert [e.reason for e in bed.kube.events] == ["StoreCredentialsMissing"]
        assert not bed.kube.calls_of("apply_secret") and not bed.kube.deployments
        assert not pools.admin.queues, "nothing provisioned before the keys are there"

        written = bed.kube.patches[("workflows", NAMESPACE, WORKFLOW)]
        await reconciler.reconcile({**body, "status": written[-1]})  # the drift timer's
        assert len(written) == 1 and len(bed.kube.events) == 1, "nothing changed, no writes"

        _worker_secret(bed.kube, accessKey="workers", secretKey="workers-s3cret")
        await reconciler.reconcile({**body, "status": written[-1]})
        assert _ready(bed.kube)["status"] == "True"
        secret = bed.kube.secrets[(NAMESPACE, "conveyor-wf-amqp")]["stringData"]
        assert (secret["CONVEYOR_S3_ACCESS_KEY"], secret["CONVEYOR_S3_SECRET_KEY"]) == (
            "workers", "workers-s3cret")
        [deployment] = bed.kube.deployments.values()
        env = {e["name"]: e.get("value", e.get("valueFrom")) for e in
               deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["CONVEYOR_S3_BUCKET"] == "runs"
        assert env["CONVEYOR_S3_PREFIX"] == "conveyor/"
        assert env["CONVEYOR_S3_SECRET_KEY"] == {"secretKeyRef": {
            "name": "conveyor-wf-amqp", "key": "CONVEYOR_S3_SECRET_KEY"}}
        assert "workers-s3cret" not in str(deployment)
        assert "operator-s3cret" not in str(bed.kube.secrets) + str(bed.kube.deployments)

    drive(scenario)


def drive_value(make: Callable[[], Any]) -> Any:
    """The value of one coroutine, run on a fresh loop by `drive`."""
    found: list[Any] = []

    async def scenario() -> None:
        found.append(await make())

    drive(scenario)
    return found[0]
