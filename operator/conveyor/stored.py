"""The `{"$ref": ...}` form of a stored value, as far as the pure core needs to know it: to
recognise one, find those in a value, and name one. What a reference holds, and reading
it, is the object store adapter's (`conveyor.store.values`, `conveyor.store.loading`)."""

from __future__ import annotations

import json
from typing import Any

REF = "$ref"


def is_ref(value: Any) -> bool:
    """Whether `value` stands for a stored value (a map whose only key is `$ref`)."""
    return isinstance(value, dict) and len(value) == 1 and REF in value


def refs_in(value: Any) -> list[Any]:
    """The `$ref` values in `value`: itself, or the elements of a list (a forEach task's item
    outputs, each stored alone), or the values of a map and the elements of its lists
    (inputs, one per field). Deeper nesting is not searched: references only ever stand at
    these places."""
    if is_ref(value):
        return [value]
    if isinstance(value, list):
        return [v for v in value if is_ref(v)]
    if isinstance(value, dict):
        found = []
        for v in value.values():
            if is_ref(v):
                found.append(v)
            elif isinstance(v, list):
                found.extend(e for e in v if is_ref(e))
        return found
    return []


def ref_id(value: Any) -> str:
    """A stable identity of a `$ref` value, for caches: its store and key."""
    body = value[REF]
    if not isinstance(body, dict):
        return repr(body)
    return f"{body.get('store')}/{body.get('key')}"


def ref_size(value: Any) -> int:
    """The bytes a `$ref` value says it stands for (0 when it does not say)."""
    body = value[REF]
    size = body.get("size") if isinstance(body, dict) else None
    return size if isinstance(size, int) and not isinstance(size, bool) else 0


# --- the item outputs of a forEach task, kept in chunks by the operator -----------------

CHUNK_VERSION = 1
_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def items_ref(bucket: str, prefix: str, size: int, items: int, chunks: int) -> dict[str, Any]:
    """The `$ref` of a forEach task's item outputs: `chunks` objects under the full key
    `prefix`, holding `items` item outputs and `size` bytes in all."""
    return {REF: {"store": bucket, "key": prefix, "size": size, "items": items,
                  "chunks": chunks}}


def is_items_ref(value: Any) -> bool:
    return is_ref(value) and isinstance(value[REF], dict) and "items" in value[REF]


def chunk_key(prefix: str, seq: int) -> str:
    return f"{prefix}{seq:06d}.json"


def encode(value: Any) -> bytes:
    """A stored value's bytes: compact JSON in UTF-8 (documents and chunks alike)."""
    return _COMPACT.encode(value).encode()


def encode_chunk(pairs: list[tuple[int, Any]]) -> bytes:
    """One chunk: item outputs with their indexes, in any order."""
    return encode({"v": CHUNK_VERSION, "items": [[i, v] for i, v in pairs]})


def with_path(value: Any, path: tuple[str, ...]) -> dict[str, Any]:
    """A document `$ref` narrowed to the field at `path` inside it: what a selection such as
    `tasks.gen.outputs.rows` passes on, so the value travels by reference too."""
    body = dict(value[REF])
    body["path"] = [*body.get("path", []), *path]
    return {REF: body}
