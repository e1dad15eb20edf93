"""The store side of an attempt: inputs that are references are read before the task
function runs, outputs over the inline limit are stored after it, so the function sees and
returns plain values whatever their size (DESIGN.md §4, and §7 on `$ref`).

Everything here runs on the task thread, as the function does: a download or upload of any
length holds only that thread, while the link's I/O thread keeps taking confirms and the
heartbeat thread keeps the attempt's lease (the job counts as running from `started` until
its final event, store traffic included).

Keys are deterministic per attempt (`store.values.attempt_key`): a redelivered attempt
overwrites its own object and nobody else's, so a retry of the upload needs no cleanup.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from conveyor.errors import ConveyorError
from conveyor.models import TaskMessage
from conveyor.store.errors import StoreError
from conveyor.store.loading import MAX_OBJECT_ENV, Blobs, Values
from conveyor.store.values import attempt_key, run_prefix
from conveyor.stored import is_ref, refs_in
from conveyor.worker.context import TaskContext
from conveyor.worker.executing import Outcome, OutputCap, execute, failed, type_name
from conveyor.worker.registry import TaskDefinition
from conveyor.worker.settings import WorkerSettings

log = logging.getLogger("conveyor.worker")

NO_STORE_ADVICE = (
    "configure an object store (CONVEYOR_S3_BUCKET and the other CONVEYOR_S3_* settings; the"
    " chart's store.* values) to pass larger outputs by reference")
NO_STORE_FOR_INPUTS = (
    "the inputs are stored in the object store but this worker has no store configured"
    " (CONVEYOR_S3_*)")


class OffloadFailed(ConveyorError):  # noqa: N818 (a failed attempt, not a worker error)
    """A value could not be passed by reference; `retryable` says whether another attempt
    may succeed (a store that is back) or not (a value gone, refused, corrupted)."""

    def __init__(self, message: str, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class Offload:
    """Passes an attempt's values by reference through `blobs`, the store that
    `settings.store` describes (None when there is no store)."""

    def __init__(self, settings: WorkerSettings, blobs: Blobs | None = None) -> None:
        if (settings.store is None) != (blobs is None):
            raise ValueError("an Offload needs blobs exactly when the settings name a store")
        self._store = settings.store
        self._values = (None if blobs is None
                        else Values(blobs, max_bytes=settings.max_object_bytes))
        self._inline = settings.inline_output_bytes
        # With a store, anything up to the largest object goes; without, outputs over the
        # inline limit still travel inline up to the old cap (the operator then fails the task
        # with its own message), and past it the advice is the store.
        self.cap = (
            OutputCap(settings.max_output_bytes,
                      f"(CONVEYOR_MAX_OUTPUT_BYTES); {NO_STORE_ADVICE}")
            if settings.store is None else
            OutputCap(settings.max_object_bytes,
                      f"({MAX_OBJECT_ENV}, the largest object this worker stores)"))

    def attempt(self, definition: TaskDefinition, message: TaskMessage,
                ctx: TaskContext) -> Outcome:
        """Run the attempt: its inputs read, the function called, its outputs stored if
        they are over the inline limit."""
        try:
            inputs = self.inputs(message)
        except OffloadFailed as failure:
            log.warning("Failed to read inputs attempt=%s error=%s", message.attempt_id,
                        failure)
            cause = failure.__cause__
            return failed(str(failure), failure.retryable,
                          error_type=None if cause is None else type_name(type(cause)))
        return self.outputs(message, execute(definition, inputs, ctx, self.cap))

    # -- inputs --------------------------------------------------------------------------

    def inputs(self, message: TaskMessage) -> dict[str, Any]:
        """The inputs as the function sees them: every reference replaced by its value. The
        operator sends either the whole inputs as one reference, or fields whose values are
        references (a stored upstream output passed through; a forEach task's items)."""
        inputs = message.inputs
        if not refs_in(inputs):
            return inputs
        if is_ref(inputs):
            loaded = self._read(inputs, "the inputs")
            if not isinstance(loaded, dict):
                raise OffloadFailed(f"the stored inputs are a {type(loaded).__name__}, not a"
                                    " map of inputs", False)
            inputs = loaded  # and its fields may hold references in turn
        return {name: self._read(value, f"input {name!r}") if _holds_refs(value) else value
                for name, value in inputs.items()}

    def _read(self, value: Any, what: str) -> Any:
        if self._values is None:
            raise OffloadFailed(NO_STORE_FOR_INPUTS, False)
        try:
            return self._values.resolve(value)
        except StoreError as error:
            # The error names the object (s3://bucket/key); ObjectNotFoundError says it is
            # gone, IntegrityError that its bytes are not the reference's.
            raise OffloadFailed(f"cannot read {what} from the object store: {error}",
                                error.retryable) from error

    # -- outputs -------------------------------------------------------------------------

    def outputs(self, message: TaskMessage, outcome: Outcome) -> Outcome:
        """`outcome`, its outputs replaced by their reference if they are over the inline
        limit and there is a store; failed if storing them failed."""
        if (outcome.status != "succeeded" or self._values is None or self._store is None
                or outcome.size <= self._inline):
            return outcome
        key = attempt_key(run_prefix(message.namespace, message.workflow, message.run_uid),
                          message.task, message.index, message.attempt, "outputs")
        try:
            ref = self._values.save(key, outcome.outputs, "the outputs document")
        except (StoreError, ValueError) as error:  # ValueError: a key S3 cannot hold
            where = f"s3://{self._store.bucket}/{self._store.full_key(key)}"
            retryable = isinstance(error, StoreError) and error.retryable
            log.warning("Failed to store outputs attempt=%s at=%s retryable=%s error=%s",
                        message.attempt_id, where, retryable, error)
            return failed(f"cannot store outputs at {where}: {error}", retryable,
                          outcome.duration, error_type=type_name(type(error)))
        log.info("Stored outputs attempt=%s at=s3://%s/%s size=%d", message.attempt_id,
                 ref["$ref"]["store"], ref["$ref"]["key"], ref["$ref"]["size"])
        return dataclasses.replace(outcome, outputs=ref)


def _holds_refs(value: Any) -> bool:
    """Whether an input field is, or lists, references: the places they may stand in a field
    (`conveyor.stored.refs_in`; a map's own values are not searched)."""
    return is_ref(value) or (isinstance(value, list) and any(is_ref(v) for v in value))
