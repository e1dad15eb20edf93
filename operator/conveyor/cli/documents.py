"""The documents of a manifest file as kubectl sends them: JSON values, not YAML's.

kubectl turns YAML into JSON before the API server sees it, so `conveyor lint` reads the same
way: a timestamp stays text (`2024-01-01` is a string), keys become strings (`1: a` has the key
"1"), `!!binary` is its base64 text and a `!!set` a map of nulls. An alias expands to a copy of
its anchor, as in JSON; a document that would expand past MAX_VALUES values ("billion laughs")
or that contains itself is refused, as kubectl's YAML reader refuses it, instead of taking the
linter's memory.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import date, datetime
from typing import Any

import yaml

MAX_VALUES = 250_000


class DocumentError(Exception):
    """A file that is no YAML kubectl would send; `line` from 1."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


class _Loader(yaml.SafeLoader):
    """SafeLoader without the timestamp type, which JSON does not have."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def documents(text: str) -> Iterator[tuple[yaml.Node, Any]]:
    """(node tree, JSON value) of each document; DocumentError for the first unreadable one."""
    loader: _Loader | None = None
    try:
        loader = _Loader(text)  # its reader checks every character at once
        while loader.check_node():
            node = loader.get_node()
            assert node is not None  # check_node() said there is one
            yield node, as_json(loader.construct_document(node), node.start_mark.line + 1)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        raise DocumentError(mark.line + 1 if mark else 1,
                            f"invalid YAML: {error.problem}") from None
    except yaml.YAMLError as error:  # the reader's: a character YAML does not allow, ...
        raise DocumentError(_line(text, getattr(error, "position", 0)),
                            f"invalid YAML: {str(error).splitlines()[0]}") from None
    except RecursionError:
        raise DocumentError(1, "invalid YAML: nested too deeply to read") from None
    finally:
        if loader is not None:
            loader.dispose()


def _line(text: str, position: int) -> int:
    return text.count("\n", 0, max(position, 0)) + 1


def as_json(value: Any, line: int) -> Any:
    """A constructed YAML value as JSON would have it, without recursion."""
    root: list[Any] = [None]
    # (value, where to put its copy, key there, ids of the containers above it)
    stack: list[tuple[Any, Any, Any, frozenset[int]]] = [(value, root, 0, frozenset())]
    count = 0
    while stack:
        item, parent, key, above = stack.pop()
        count += 1
        if count > MAX_VALUES:
            raise DocumentError(line, f"invalid YAML: the document expands to more than "
                                      f"{MAX_VALUES} values (excessive aliasing)")
        if isinstance(item, dict | list | set | tuple):
            if id(item) in above:
                raise DocumentError(line, "invalid YAML: an alias refers to a node that "
                                          "contains it")
            inner = above | {id(item)}
            if isinstance(item, dict):
                copy: Any = {}
                for k, v in item.items():
                    copy[_key(k)] = None
                    stack.append((v, copy, _key(k), inner))
            elif isinstance(item, set):
                copy = dict.fromkeys(_key(k) for k in item)
            else:
                copy = [None] * len(item)
                stack.extend((v, copy, i, inner) for i, v in enumerate(item))
            parent[key] = copy
        else:
            parent[key] = _scalar(item)
    return root[0]


def _key(key: Any) -> str:
    if key is None:
        return "null"
    if isinstance(key, bool):
        return "true" if key else "false"
    return str(_scalar(key))


def _scalar(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, datetime | date):  # an explicit !!timestamp tag
        return value.isoformat()
    return value
