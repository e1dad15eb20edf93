"""`conveyor outputs` and the stored objects of `conveyor get`, over an in-memory store: what is
printed for inline and stored outputs, forEach items, and each way it can go wrong (no store
configured, a gone object, a store that does not answer), with its exit code."""

from __future__ import annotations

import json
from typing import Any

import pytest

from conveyor.cli.common import NOT_FOUND, STORE, USAGE, CliError
from conveyor.cli.objectstore import UserStore
from conveyor.cli.outputs import outputs, task_entry
from conveyor.cli.render import dump
from conveyor.store import ObjectNotFoundError, ObjectRef, StoreError, StoreSettings, Values
from conveyor.store import values as v

ENV = {"CONVEYOR_S3_ENDPOINT": "http://127.0.0.1:9", "CONVEYOR_S3_ACCESS_KEY": "me",
       "CONVEYOR_S3_SECRET_KEY": "my-s3cret", "CONVEYOR_S3_BUCKET": "runs",
       "CONVEYOR_S3_PREFIX": "conveyor/"}
RUN_PREFIX = v.run_prefix("shop", "orders", "uid-1")


class MemoryStore:
    """Objects of bucket `runs` in a dict by full key, as ObjectStore keeps them under the
    settings' prefix; `down` makes every call fail as a store that does not answer."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.opened: list[StoreSettings] = []
        self.down = False

    def open(self, settings: StoreSettings) -> MemoryStore:
        self.opened.append(settings)
        self.prefix = settings.prefix
        return self

    def _answer(self) -> None:
        if self.down:
            raise StoreError("get s3://runs/x: no answer from the store (EndpointConnectionError)")

    def put(self, key: str, data: bytes) -> ObjectRef:
        self.objects["conveyor/" + key] = data
        return ObjectRef.of("runs", "conveyor/" + key, data)

    def get(self, ref: ObjectRef) -> bytes:
        return ref.verify(self.read(ref.bucket, ref.key, ref.size))

    def read(self, bucket: str, key: str, limit: int) -> bytes:
        self._answer()
        if key not in self.objects:
            raise ObjectNotFoundError(f"get s3://{bucket}/{key}: the store answered 404 NoSuchKey")
        return self.objects[key][: limit + 1]

    def list(self, prefix: str = "") -> list[tuple[str, int]]:
        self._answer()
        full = self.prefix + prefix
        return sorted((k[len(self.prefix):], len(d)) for k, d in self.objects.items()
                      if k.startswith(full))

    def __enter__(self) -> MemoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


@pytest.fixture
def memory() -> MemoryStore:
    return MemoryStore()


def _user(memory: MemoryStore, env: dict[str, str] | None = None) -> UserStore:
    return UserStore(ENV if env is None else env, memory.open)


def _run(*tasks: dict[str, Any], outputs: Any = None) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": "Succeeded", "tasks": list(tasks)}
    if outputs is not None:
        status["outputs"] = outputs
    return {"metadata": {"name": "r1", "namespace": "shop", "uid": "uid-1"},
            "spec": {"workflowRef": {"name": "orders"}}, "status": status}


def test_inline_outputs_are_printed_without_touching_any_store(memory: MemoryStore):
    entry = task_entry(_run({"name": "validate", "phase": "Succeeded",
                             "outputs": {"total": 19.9}}), "validate")
    value = outputs(entry, "r1", None, _user(memory, {}))
    assert json.loads(dump(value, "json")) == {"total": 19.9}
    assert dump(value, "yaml") == "total: 19.9"
    assert not memory.opened


def test_a_plain_task_that_succeeded_without_outputs_has_an_empty_map(memory: MemoryStore):
    entry = {"name": "ping", "phase": "Succeeded"}
    assert outputs(entry, "r1", None, _user(memory)) == {}
    with pytest.raises(CliError, match="has no outputs yet \\(phase Running\\)") as caught:
        outputs({"name": "ping", "phase": "Running"}, "r1", None, _user(memory))
    assert caught.value.code == NOT_FOUND


def test_stored_outputs_are_read_back_from_the_users_store(memory: MemoryStore):
    big = {"rows": ["x" * 100] * 50}
    ref = Values(memory).save(f"{RUN_PREFIX}charge/-/1/outputs.json", big)
    entry = {"name": "charge", "phase": "Succeeded", "outputs": ref}
    assert outputs(entry, "r1", None, _user(memory)) == big
    assert memory.opened[0].bucket == "runs"


def test_a_reference_needs_no_bucket_variable_it_names_its_own(memory: MemoryStore):
    ref = Values(memory).save(f"{RUN_PREFIX}charge/-/1/outputs.json", {"id": 1})
    env = {k: v for k, v in ENV.items() if k != "CONVEYOR_S3_BUCKET"}
    assert outputs({"name": "charge", "phase": "Succeeded", "outputs": ref}, "r1", None,
                   _user(memory, env)) == {"id": 1}
    assert memory.opened[0].bucket == "runs"


def test_a_reference_without_a_configured_store_names_the_variables(memory: MemoryStore):
    ref = Values(memory).save(f"{RUN_PREFIX}charge/-/1/outputs.json", {"id": 1})
    with pytest.raises(CliError) as caught:
        outputs({"name": "charge", "phase": "Succeeded", "outputs": ref}, "r1", None,
                _user(memory, {}))
    assert caught.value.code == STORE
    message = str(caught.value)
    assert "s3://runs/conveyor/shop/orders/uid-1/charge/-/1/outputs.json" in message
    for name in ("CONVEYOR_S3_ACCESS_KEY", "CONVEYOR_S3_SECRET_KEY", "CONVEYOR_S3_ENDPOINT"):
        assert name in message
    assert not memory.opened


def test_a_half_configured_store_is_a_usage_error_naming_the_variable(memory: MemoryStore):
    ref = Values(memory).save(f"{RUN_PREFIX}charge/-/1/outputs.json", {"id": 1})
    env = {k: v for k, v in ENV.items() if k != "CONVEYOR_S3_SECRET_KEY"}
    with pytest.raises(CliError, match="CONVEYOR_S3_SECRET_KEY is not set") as caught:
        outputs({"name": "charge", "phase": "Succeeded", "outputs": ref}, "r1", None,
                _user(memory, env))
    assert caught.value.code == USAGE


def test_a_gone_object_is_not_found_and_a_store_down_is_the_stores_exit_code(
        memory: MemoryStore):
    ref = Values(memory).save(f"{RUN_PREFIX}charge/-/1/outputs.json", {"id": 1})
    entry = {"name": "charge", "phase": "Succeeded", "outputs": ref}
    memory.down = True
    with pytest.raises(CliError, match="no answer from the store") as caught:
        outputs(entry, "r1", None, _user(memory))
    assert caught.value.code == STORE
    memory.down = False
    memory.objects.clear()
    with pytest.raises(CliError, match="is gone") as caught:
        outputs(entry, "r1", None, _user(memory))
    assert caught.value.code == NOT_FOUND
    assert "my-s3cret" not in str(caught.value)


def test_foreach_items_inline_and_stored_one_by_one(memory: MemoryStore):
    stored = Values(memory).save(f"{RUN_PREFIX}work/1/1/outputs.json", {"n": 1, "big": "y"})
    entry = {"name": "work", "phase": "Succeeded", "outputs": [{"n": 0}, stored, None],
             "items": {"total": 3, "succeeded": 2}}
    user = _user(memory)
    assert outputs(entry, "r1", 0, user) == {"n": 0}
    assert outputs(entry, "r1", 1, user) == {"n": 1, "big": "y"}
    assert outputs(entry, "r1", None, user) == [{"n": 0}, {"n": 1, "big": "y"}, None]
    with pytest.raises(CliError, match="item 2 of task 'work' has no outputs yet"):
        outputs(entry, "r1", 2, user)
    with pytest.raises(CliError, match="has 3 item\\(s\\): there is no item 3") as caught:
        outputs(entry, "r1", 3, user)
    assert caught.value.code == NOT_FOUND


def test_foreach_items_in_chunks_are_loaded_and_picked(memory: MemoryStore):
    values = Values(memory)
    prefix = v.items_prefix(RUN_PREFIX, "work")
    first = values.save_chunk(prefix, 0, [(1, {"n": 1}), (0, {"n": 0})])
    second = values.save_chunk(prefix, 1, [(2, {"n": 2})])
    ref = v.ItemsRef("runs", "conveyor/" + prefix, first.size + second.size, 3, 2).to_json()
    entry = {"name": "work", "phase": "Succeeded", "outputs": ref, "items": {"total": 3}}
    assert outputs(entry, "r1", 2, _user(memory)) == {"n": 2}
    assert outputs(entry, "r1", None, _user(memory)) == [{"n": 0}, {"n": 1}, {"n": 2}]


def test_item_of_a_plain_task_is_a_usage_error(memory: MemoryStore):
    with pytest.raises(CliError, match="not a forEach task") as caught:
        outputs({"name": "ping", "phase": "Succeeded", "outputs": {}}, "r1", 0, _user(memory))
    assert caught.value.code == USAGE


def test_a_task_not_in_the_status_names_those_that_are():
    with pytest.raises(CliError, match=r"'nope' is not in .* \(its tasks: a, b\)") as caught:
        task_entry(_run({"name": "a"}, {"name": "b"}), "nope")
    assert caught.value.code == NOT_FOUND


# -- conveyor get: the run's stored objects ---------------------------------------------------
def test_get_lists_the_runs_objects_under_its_prefix_with_sizes(memory: MemoryStore):
    ref = Values(memory).save(f"{RUN_PREFIX}charge/-/1/outputs.json", {"id": 1})
    Values(memory).save_chunk(v.items_prefix(RUN_PREFIX, "work"), 0, [(0, {})])
    Values(memory).save(v.run_prefix("shop", "orders", "uid-2") + "x/-/1/outputs.json", 1)
    objects, note = _user(memory).listing(_run({"name": "charge", "outputs": ref}))
    assert note is None and objects is not None
    lines = objects.splitlines()
    assert lines[0] == "stored objects under s3://runs/conveyor/shop/orders/uid-1/"
    assert lines[1].split() == ["KEY", "SIZE"]
    assert [line.split() for line in lines[2:]] == [
        ["charge/-/1/outputs.json", "8"], ["work/items/000000.json", "24"]]


def test_get_without_a_store_is_quiet_and_notes_stored_values_it_cannot_list(
        memory: MemoryStore):
    assert _user(memory, {}).listing(_run({"name": "a", "outputs": {"x": 1}})) == (None, None)
    ref = Values(memory).save(f"{RUN_PREFIX}charge/-/1/outputs.json", {"id": 1})
    objects, note = _user(memory, {}).listing(_run({"name": "charge", "outputs": ref}))
    assert objects is None and note is not None and "\n" not in note
    assert "1 stored value(s)" in note and "CONVEYOR_S3_BUCKET" in note
    assert not memory.opened


def test_get_with_the_store_down_says_so_in_one_line(memory: MemoryStore):
    memory.down = True
    objects, note = _user(memory).listing(_run())
    assert objects is None and note is not None and "\n" not in note
    assert note.startswith("stored objects not listed: get s3://runs/x: no answer")
    assert "no answer from the store" in note
    empty = MemoryStore()
    assert _user(empty).listing(_run()) == (
        None, "no stored objects under s3://runs/conveyor/shop/orders/uid-1/")


def test_get_with_a_key_pair_but_no_bucket_is_quiet_for_a_run_without_stored_values(
        memory: MemoryStore):
    """What `eval "$(make -s testbed-env)"` leaves: the store's place and keys, no bucket."""
    keys = {k: v for k, v in ENV.items() if k != "CONVEYOR_S3_BUCKET"}
    assert _user(memory, keys).listing(_run({"name": "a", "outputs": {"x": 1}})) == (None, None)
    assert not memory.opened
