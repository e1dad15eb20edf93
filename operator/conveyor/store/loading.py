"""Stored values read and written: documents, forEach item chunks, and inputs with their
references resolved, over any object store that has the `Blobs` shape (`ObjectStore`, or an
in-memory fake in unit tests).

Every failure is a `StoreError` whose message names the object (`s3://bucket/key`) and, for
a size over a limit, the setting that sets the limit.
"""

from __future__ import annotations

from typing import Any, Protocol

from conveyor.store import values
from conveyor.store.errors import IntegrityError, ObjectNotFoundError, StoreError
from conveyor.store.refs import ObjectRef
from conveyor.store.values import ItemsRef

MAX_OBJECT_ENV = "CONVEYOR_S3_MAX_OBJECT_BYTES"
DEFAULT_MAX_OBJECT_BYTES = 1024 * 1024 * 1024


class Blobs(Protocol):
    """What `Values` needs of an object store (keys relative to its prefix on write)."""

    def put(self, key: str, data: bytes) -> ObjectRef: ...

    def get(self, ref: ObjectRef) -> bytes: ...

    def read(self, bucket: str, key: str, limit: int) -> bytes: ...


class TooLargeError(StoreError):
    """A value is over the largest object allowed; the message names the setting."""

    retryable = False


class Values:
    """Values in an object store, each at most `max_bytes` as JSON."""

    def __init__(self, blobs: Blobs, *, max_bytes: int = DEFAULT_MAX_OBJECT_BYTES) -> None:
        self.blobs = blobs
        self.max_bytes = max_bytes

    def save(self, key: str, value: Any, what: str = "a value") -> dict[str, Any]:
        """Store `value` as a document at `key`; its `$ref` form."""
        data = values.encode(value)
        self._check_size(len(data), what)
        return values.document_ref(self.blobs.put(key, data))

    def save_chunk(self, prefix: str, seq: int, pairs: list[tuple[int, Any]]) -> ObjectRef:
        """Store chunk `seq` of item outputs under `prefix` (relative to the store's own
        prefix, as every write); its reference (the full key, the bytes written)."""
        return self.blobs.put(values.chunk_key(prefix, seq), values.encode_chunk(pairs))

    def load(self, value: Any) -> Any:
        """The value a `$ref` stands for, read and checked."""
        try:
            ref = values.parse(value)
        except ValueError as error:
            raise IntegrityError(f"a stored value's reference is malformed: {error}") from None
        self._check_size(ref.size, f"s3://{ref.bucket}/{_key(ref)}")
        if isinstance(ref, ItemsRef):
            return self._load_items(ref)
        try:
            data = self.blobs.get(ref)
        except ObjectNotFoundError as error:
            raise _gone(ref.bucket, ref.key, error) from error
        document = self._decoded(data, f"s3://{ref.bucket}/{ref.key}")
        return _select(document, value[values.REF].get("path", []),
                       f"s3://{ref.bucket}/{ref.key}")

    def resolve(self, value: Any) -> Any:
        """`value` with the references where they may stand (`values.refs_in`) replaced by
        what they stand for: inputs as a task sees them."""
        if values.is_ref(value):
            return self.load(value)
        if isinstance(value, list):
            return [self.load(v) if values.is_ref(v) else v for v in value]
        if isinstance(value, dict):
            return {k: self.resolve(v) if values.is_ref(v) or isinstance(v, list) else v
                    for k, v in value.items()}
        return value

    def _load_items(self, ref: ItemsRef) -> list[Any]:
        chunks = []
        read = 0
        for seq in range(ref.chunks):
            key = ref.chunk_key(seq)
            data = self._read_named(ref.bucket, key, ref.size - read)
            read += len(data)
            if read > ref.size:
                raise IntegrityError(f"s3://{ref.bucket}/{key}: the chunks hold more than the "
                                     f"{ref.size} bytes the reference counts")
            try:
                chunks.append(values.decode_chunk(data, f"s3://{ref.bucket}/{key}"))
            except ValueError as error:
                raise IntegrityError(str(error)) from None
        if read != ref.size:
            raise IntegrityError(f"s3://{ref.bucket}/{ref.prefix}: {read} bytes in "
                                 f"{ref.chunks} chunks, {ref.size} expected")
        try:
            return values.merge_chunks(chunks, ref)
        except ValueError as error:
            raise IntegrityError(str(error)) from None

    def _check_size(self, size: int, what: str) -> None:
        if size > self.max_bytes:
            raise TooLargeError(f"{what} is {size} bytes, over the {self.max_bytes}-byte "
                                f"limit of {MAX_OBJECT_ENV}")

    def _read_named(self, bucket: str, key: str, limit: int) -> bytes:
        try:
            return self.blobs.read(bucket, key, limit)
        except ObjectNotFoundError as error:
            raise _gone(bucket, key, error) from error

    @staticmethod
    def _decoded(data: bytes, where: str) -> Any:
        try:
            return values.decode(data, where)
        except ValueError as error:
            raise IntegrityError(str(error)) from None


def _select(document: Any, path: list[str], where: str) -> Any:
    for name in path:
        if not isinstance(document, dict) or name not in document:
            raise IntegrityError(f"{where} has no field {'.'.join(path)!r}")
        document = document[name]
    return document


def _gone(bucket: str, key: str, error: Exception) -> ObjectNotFoundError:
    return ObjectNotFoundError(f"the stored value s3://{bucket}/{key} is gone (deleted or "
                               f"never written): {error}")


def _key(ref: values.Stored) -> str:
    return ref.prefix if isinstance(ref, ItemsRef) else ref.key
