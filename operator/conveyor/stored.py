"""The `{"$ref": ...}` form of a stored value, as far as the pure core needs to know it: to
recognise one, find those in a value, and name one. What a reference holds, and reading
it, is the object store adapter's (`conveyor.store.values`, `conveyor.store.loading`)."""

from __future__ import annotations

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
