"""Values kept by reference: the `{"$ref": ...}` form that stands for a stored value in a
WorkflowRun's status, a task message or an event, and where each value's object lives.

Two kinds of stored value (DESIGN.md §7):

    {"$ref": {"store": B, "key": K, "size": N, "sha256": H}}
        a document: the value's compact JSON, one object, written by a worker (outputs too
        large to travel inline) or by the operator (inputs too large for a message);
    {"$ref": {"store": B, "key": K, "size": N, "sha256": H, "path": ["rows"]}}
        the field `rows` of that document (what `${{ tasks.gen.outputs.rows }}` passes on
        without reading it);
    {"$ref": {"store": B, "key": P, "size": N, "items": C, "chunks": M}}
        the item outputs of a forEach task, written by the operator as they arrive: M chunk
        objects `P000000.json`, ... under the prefix P, holding C items and N bytes in all;
        read back they are one list in item order.

Pure: encoding, checking and naming. `loading` does the I/O through `store.client`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from conveyor.store.refs import ObjectRef
from conveyor.stored import (
    REF,
    chunk_key,
    encode,
    encode_chunk,
    is_ref,
    items_ref,
    ref_id,
    refs_in,
)

__all__ = [
    "REF",
    "ItemsRef",
    "Stored",
    "attempt_key",
    "chunk_key",
    "decode",
    "decode_chunk",
    "document_ref",
    "encode",
    "encode_chunk",
    "is_ref",
    "items_prefix",
    "items_ref",
    "merge_chunks",
    "parse",
    "ref_id",
    "refs_in",
    "run_prefix",
]


def decode(data: bytes, where: str) -> Any:
    """A document's value; ValueError naming the object when it is not JSON."""
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{where} does not hold a JSON document: {error}") from None


@dataclass(frozen=True)
class ItemsRef:
    """The item outputs of a forEach task, in chunks under `prefix` (a full key prefix)."""

    bucket: str
    prefix: str
    size: int
    items: int
    chunks: int

    def chunk_key(self, seq: int) -> str:
        return chunk_key(self.prefix, seq)

    def to_json(self) -> dict[str, Any]:
        return items_ref(self.bucket, self.prefix, self.size, self.items, self.chunks)


Stored = ObjectRef | ItemsRef


def document_ref(ref: ObjectRef) -> dict[str, Any]:
    """The `$ref` form of a document's reference."""
    return {REF: {"store": ref.bucket, "key": ref.key, "size": ref.size, "sha256": ref.sha256}}


def parse(value: Any) -> Stored:
    """The reference a `$ref` value stands for; ValueError saying what is wrong with it."""
    if not is_ref(value):
        raise ValueError(f"not a {REF} value")
    body = value[REF]
    if not isinstance(body, dict):
        raise ValueError(f"{REF} must be a map")
    if "items" in body:
        bucket, prefix = body.get("store"), body.get("key")
        numbers = [body.get(f) for f in ("size", "items", "chunks")]
        if not isinstance(bucket, str) or not bucket:
            raise ValueError(f"{REF}.store must be a non-empty string")
        if not isinstance(prefix, str) or not prefix.endswith("/"):
            raise ValueError(f"{REF}.key of forEach items must be a prefix ending in '/'")
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in numbers):
            raise ValueError(f"{REF}.size, .items and .chunks must be non-negative integers")
        return ItemsRef(bucket, prefix, *numbers)  # type: ignore[arg-type]
    path = body.get("path", [])
    if not isinstance(path, list) or not all(isinstance(p, str) for p in path):
        raise ValueError(f"{REF}.path must be a list of field names")
    renamed = {("bucket" if k == "store" else k): v for k, v in body.items()}
    try:
        return ObjectRef.from_json(renamed)
    except ValueError as error:
        raise ValueError(str(error).replace("reference.bucket", f"{REF}.store")
                         .replace("reference.", f"{REF}.")) from None


# --- chunks of forEach item outputs ------------------------------------------------------


def decode_chunk(data: bytes, where: str) -> list[tuple[int, Any]]:
    body = decode(data, where)
    if not isinstance(body, dict) or not isinstance(body.get("items"), list):
        raise ValueError(f"{where} is not a chunk of item outputs")
    pairs = []
    for entry in body["items"]:
        if (not isinstance(entry, list) or len(entry) != 2 or not isinstance(entry[0], int)
                or isinstance(entry[0], bool)):
            raise ValueError(f"{where}: an entry is not [index, outputs]")
        pairs.append((entry[0], entry[1]))
    return pairs


def merge_chunks(chunks: Iterable[list[tuple[int, Any]]], ref: ItemsRef) -> list[Any]:
    """The items of `ref` in item order, from its chunks; ValueError when an item is missing
    or twice (chunks that are not the ones the reference counted)."""
    values: list[Any] = [None] * ref.items
    seen = 0
    for pairs in chunks:
        for i, value in pairs:
            if not 0 <= i < ref.items:
                raise ValueError(f"s3://{ref.bucket}/{ref.prefix}: item {i} is out of range "
                                 f"(the reference counts {ref.items})")
            values[i] = value
            seen += 1
    if seen != ref.items:
        raise ValueError(f"s3://{ref.bucket}/{ref.prefix}: {seen} items in "
                         f"{ref.chunks} chunks, {ref.items} expected")
    return values


# --- where values live (keys relative to the store's prefix) -----------------------------


def run_prefix(namespace: str, workflow: str, run_uid: str) -> str:
    """Every object of one run is under this prefix: one per namespace and Workflow above
    it, so a store's policy can grant a Workflow's workers only their own."""
    return f"{namespace}/{workflow}/{run_uid}/"


def attempt_key(run: str, task: str, index: int | None, attempt: int, what: str) -> str:
    """An attempt's document under `run` (its `run_prefix`): `what` is `outputs` (the
    worker's) or `inputs` (the operator's, for inputs too large for a message)."""
    instance = "-" if index is None else str(index)
    return f"{run}{task}/{instance}/{attempt}/{what}.json"


def items_prefix(run: str, task: str) -> str:
    """Where the chunks of a forEach task's item outputs go, under `run` (its
    `run_prefix`)."""
    return f"{run}{task}/items/"
