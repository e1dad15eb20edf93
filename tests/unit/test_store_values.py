"""Stored values: the `$ref` form, documents and forEach item chunks read back, and what a
reader says when the object is gone, corrupted or too large (an in-memory `Blobs`)."""

from __future__ import annotations

from typing import Any

import pytest

from conveyor.store import IntegrityError, ObjectNotFoundError, TooLargeError, Values
from conveyor.store import values as v
from conveyor.stored import is_ref, refs_in, with_path
from unit.blobs import MemoryBlobs


def test_a_document_reads_back_as_the_value_it_stands_for():
    store = Values(MemoryBlobs())
    value = {"items": list(range(1000)), "name": "ünïcode"}
    ref = store.save("ns/wf/uid/gen/-/1/outputs.json", value)
    assert is_ref(ref) and ref["$ref"]["store"] == "b"
    assert ref["$ref"]["key"] == "p/ns/wf/uid/gen/-/1/outputs.json"
    assert store.load(ref) == value
    assert store.resolve({"a": ref, "b": 1, "c": [ref, 2]}) == {"a": value, "b": 1,
                                                                "c": [value, 2]}


def test_chunks_of_item_outputs_read_back_in_item_order():
    blobs = MemoryBlobs()
    store = Values(blobs)
    first = store.save_chunk("ns/wf/uid/work/items/", 0, [(2, {"n": 2}), (0, {"n": 0})])
    second = store.save_chunk("ns/wf/uid/work/items/", 1, [(1, {"n": 1})])
    prefix = first.key.removesuffix("000000.json")
    ref = v.ItemsRef("b", prefix, first.size + second.size, 3, 2).to_json()
    assert v.parse(ref) == v.ItemsRef("b", prefix, first.size + second.size, 3, 2)
    assert store.load(ref) == [{"n": 0}, {"n": 1}, {"n": 2}]
    short = v.ItemsRef("b", prefix, first.size, 3, 1).to_json()
    with pytest.raises(IntegrityError, match="2 items in 1 chunks, 3 expected"):
        store.load(short)
    fewer = v.ItemsRef("b", prefix, first.size, 2, 1).to_json()
    with pytest.raises(IntegrityError, match="item 2 is out of range"):
        store.load(fewer)


def test_a_deleted_object_is_named_in_the_error():
    blobs = MemoryBlobs()
    store = Values(blobs)
    ref = store.save("ns/wf/uid/gen/-/1/outputs.json", [1, 2, 3])
    blobs.objects.clear()
    with pytest.raises(ObjectNotFoundError, match=r"s3://b/p/ns/wf/uid/gen/-/1/outputs.json"
                                                  r" is gone"):
        store.load(ref)


def test_a_changed_object_fails_its_check():
    blobs = MemoryBlobs()
    store = Values(blobs)
    ref = store.save("k.json", {"a": 1})
    blobs.objects["p/k.json"] = b'{"a":2}'
    with pytest.raises(IntegrityError, match="sha256"):
        store.load(ref)


def test_sizes_over_the_limit_name_the_setting():
    store = Values(MemoryBlobs(), max_bytes=10)
    with pytest.raises(TooLargeError, match="CONVEYOR_S3_MAX_OBJECT_BYTES"):
        store.save("k.json", "x" * 20)


@pytest.mark.parametrize(("ref", "complaint"), [
    ({"$ref": "x"}, r"\$ref must be a map"),
    ({"$ref": {"store": "", "key": "k", "size": 1, "sha256": "0" * 64}}, r"\$ref.store"),
    ({"$ref": {"store": "b", "key": "k", "size": -1, "sha256": "0" * 64}}, r"\$ref.size"),
    ({"$ref": {"store": "b", "key": "k", "size": 1, "sha256": "xyz"}}, r"\$ref.sha256"),
    ({"$ref": {"store": "b", "key": "k", "size": 1, "items": 1, "chunks": 1}}, "prefix"),
])
def test_a_malformed_reference_says_what_is_wrong(ref: Any, complaint: str):
    with pytest.raises(ValueError, match=complaint):
        v.parse(ref)


def test_references_are_found_only_where_they_may_stand():
    ref = {"$ref": {"store": "b", "key": "k"}}
    assert refs_in(ref) == [ref]
    assert refs_in([ref, 1, ref]) == [ref, ref]
    assert refs_in({"a": ref, "b": [ref], "c": {"d": ref}}) == [ref, ref]
    assert not is_ref({"$ref": 1, "other": 2})


def test_a_reference_narrowed_to_a_field_reads_that_field():
    store = Values(MemoryBlobs())
    ref = store.save("k.json", {"rows": {"a": [1, 2]}, "other": "x" * 100})
    assert store.load(with_path(ref, ("rows", "a"))) == [1, 2]
    with pytest.raises(IntegrityError, match=r"has no field 'rows\.b'"):
        store.load(with_path(ref, ("rows", "b")))
