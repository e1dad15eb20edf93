"""A Kafka record as triggers see it, and the runs it starts (pure).

CEL sees the record as `record`: `topic`, `partition`, `offset`, `key` (its text, empty when
it has none), `headers` (a map of text; of a header given twice, the last), `value` (the
JSON value; null for a record without one) and `timestamp` (milliseconds since the epoch, or
null). A value that is not JSON cannot be seen by any trigger: the record is unusable
(`malformed-json`), as is one over MAX_RECORD_BYTES (`too-large`) or nested past what the
decoder takes (`too-deep`).

For each trigger of the record's topic: its `filter` decides (`true` starts a run, `false`
does not; an error, or any other value, is `filter-failed`), then its inputs are rendered
(`inputs-failed`) and its `key` (`key-failed`): a trigger that fails on a record starts no
run, the others still do.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from conveyor.errors import ExpressionError
from conveyor.kafka import Record
from conveyor.operator.triggers.starting import Unusable
from conveyor.operator.workflows import WorkflowEntry

# As for RabbitMQ events: a run's inputs must fit in one object.
MAX_RECORD_BYTES = 1024 * 1024
MAX_KEY_CHARS = 253


def view(record: Record) -> dict[str, Any]:
    """`record` as CEL sees it; Unusable when its value cannot be read."""
    size = len(record.value or b"")
    if size > MAX_RECORD_BYTES:
        raise Unusable("too-large", f"value of {size} bytes; records of at most "
                                    f"{MAX_RECORD_BYTES} can start runs")
    value: Any = None
    if record.value is not None:
        try:
            value = json.loads(record.value)
        except RecursionError:
            raise Unusable("too-deep", "value nests deeper than the JSON decoder "
                                       "allows") from None
        except ValueError as error:  # UnicodeDecodeError is one too
            raise Unusable("malformed-json", f"value is not JSON: {error}") from None
    return {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "key": (record.key or b"").decode(errors="replace"),
        "headers": {name: (raw or b"").decode(errors="replace")
                    for name, raw in record.headers},
        "value": value,
        "timestamp": record.timestamp_ms,
    }


def offset_ident(record: Record) -> str:
    """The default identity of a record's run: its place, which no other record has."""
    return f"{record.topic}-{record.partition}-{record.offset}"


@dataclass(frozen=True)
class Start:
    """One run to create: trigger `index` of a Workflow, for the record known as `ident`."""

    namespace: str
    workflow: str
    index: int
    ident: str
    inputs: Any


@dataclass(frozen=True)
class Failed:
    """A trigger that matched the record's topic but could not start its run, and why."""

    namespace: str
    workflow: str
    index: int
    reason: str
    detail: str


def plan(entries: Iterable[WorkflowEntry], record: Record,
         seen: dict[str, Any]) -> tuple[list[Start], list[Failed]]:
    """The runs `record` (seen as `seen`, from `view`) starts, and the triggers that
    failed on it; a filter that is not true is neither."""
    starts: list[Start] = []
    failed: list[Failed] = []
    variables = {"record": seen}
    for entry in entries:
        compiled = entry.compiled
        if compiled is None:
            continue
        namespace, workflow = entry.owner.namespace, entry.owner.name
        for index, trigger in enumerate(compiled.triggers):
            kafka = trigger.kafka
            if kafka is None or kafka.topic != record.topic:
                continue
            stage = "filter-failed"
            try:
                if kafka.filter is not None and not _passes(kafka.filter.render(variables)):
                    continue
                stage = "inputs-failed"
                inputs = trigger.inputs.render(variables)
                stage = "key-failed"
                ident = offset_ident(record) if kafka.key is None else _key(
                    kafka.key.render(variables))
            except ExpressionError as error:
                failed.append(Failed(namespace, workflow, index, stage, str(error)))
                continue
            except ValueError as error:
                failed.append(Failed(namespace, workflow, index, stage, str(error)))
                continue
            starts.append(Start(namespace, workflow, index, ident, inputs))
    return starts, failed


def _passes(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise ValueError(f"the filter gave {json.dumps(value)[:100]}, not true or false")


def _key(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    if not text or value is None:
        raise ValueError("the key is empty")
    if len(text) > MAX_KEY_CHARS:
        raise ValueError(f"the key has {len(text)} characters, more than {MAX_KEY_CHARS}")
    return text
