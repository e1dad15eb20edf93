"""An object store in memory with the shape of `conveyor.store.Blobs`, for unit tests of what
reads and writes stored values: faults injected per operation, and a gate that holds calls
until the test opens it (a slow upload or download, without sleeping)."""

from __future__ import annotations

import threading
from collections import deque

from conveyor.store import ObjectNotFoundError, ObjectRef, StoreError


class MemoryBlobs:
    """Objects in a dict, under `prefix` in `bucket`, as ObjectStore keeps them (keys given to
    `put` are relative to the prefix; a reference's key is the full key)."""

    def __init__(self, bucket: str = "b", prefix: str = "p/") -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.objects: dict[str, bytes] = {}
        self.calls: list[tuple[str, str]] = []
        """(operation, full key) of every call, in order."""
        self._faults: dict[str, deque[StoreError]] = {"put": deque(), "get": deque(),
                                                       "read": deque()}
        self._gates: dict[str, threading.Event] = {}
        self.waiting = threading.Event()
        """Set when a call is held at a gate."""

    # -- Blobs ----------------------------------------------------------------------------
    def put(self, key: str, data: bytes) -> ObjectRef:
        full = self.prefix + key
        self._enter("put", full)
        self.objects[full] = data
        return ObjectRef.of(self.bucket, full, data)

    def get(self, ref: ObjectRef) -> bytes:
        self._enter("get", ref.key)
        return ref.verify(self._read(ref.bucket, ref.key, ref.size))

    def read(self, bucket: str, key: str, limit: int) -> bytes:
        self._enter("read", key)
        return self._read(bucket, key, limit)

    # -- what cleanup needs (`operator.runs.storage.Objects`) ------------------------------
    def list(self, prefix: str = "") -> list[tuple[str, int]]:
        full = self.prefix + prefix
        return sorted((k[len(self.prefix):], len(v)) for k, v in self.objects.items()
                      if k.startswith(full))

    def delete(self, key: str) -> None:
        self.calls.append(("delete", self.prefix + key))
        self.objects.pop(self.prefix + key, None)

    def delete_prefix(self, prefix: str) -> int:
        keys = [k for k, _ in self.list(prefix)]
        for key in keys:
            self.delete(key)
        return len(keys)

    # -- the test's side ------------------------------------------------------------------
    def fail(self, operation: str, error: StoreError, times: int = 1) -> None:
        """Make the next `times` calls of `operation` (put, get, read) raise `error`."""
        self._faults[operation].extend([error] * times)

    def hold(self, operation: str) -> threading.Event:
        """Hold the calls of `operation` from now on until the returned Event is set."""
        gate = self._gates[operation] = threading.Event()
        return gate

    def _enter(self, operation: str, key: str) -> None:
        self.calls.append((operation, key))
        gate = self._gates.get(operation)
        if gate is not None and not gate.is_set():
            self.waiting.set()
            if not gate.wait(30):
                raise AssertionError(f"{operation} {key} held for 30 s: the test never opened"
                                     " the gate")
        if self._faults[operation]:
            raise self._faults[operation].popleft()

    def _read(self, bucket: str, key: str, limit: int) -> bytes:
        if bucket != self.bucket or key not in self.objects:
            raise ObjectNotFoundError(f"get s3://{bucket}/{key}: the store answered 404 NoSuchKey")
        return self.objects[key][: limit + 1]
