"""The run loop's side of the object store: stored values read for the engine (into a cache
bounded in bytes), forEach item chunks written before the status that counts them, and a
run's objects deleted with the run.

Every store call is blocking (boto3), so each runs in a thread, at most `CONCURRENCY` at a
time: the event loop never waits on the store.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import Any, Protocol

from conveyor import engine
from conveyor.operator.runs.records import RunRef
from conveyor.store import StoreError, Values
from conveyor.store.values import run_prefix
from conveyor.stored import REF, ref_id, ref_size, refs_in

log = logging.getLogger("conveyor.operator.runs")

CONCURRENCY = 8
LOAD_TRIES = 5  # a retryable failure is tried again, with backoff, this many times in all
BACKOFF_SECONDS = 1.0
NO_STORE = ("the operator has no object store configured (CONVEYOR_S3_BUCKET and the other "
            "CONVEYOR_S3_* settings; the chart's store.* values)")


class Objects(Protocol):
    """What cleanup needs of the store (`ObjectStore`): keys relative to its prefix."""

    def list(self, prefix: str = "") -> list[tuple[str, int]]: ...

    def delete_prefix(self, prefix: str) -> int: ...

    def delete(self, key: str) -> None: ...


class ValueCache(Mapping[str, Any]):
    """Values read from the store by `stored.ref_id`, the least recently used dropped once
    they hold more than `max_bytes` (as the references count their JSON); the newest always
    stays, so a value larger than the bound can still be used once."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._values: OrderedDict[str, tuple[Any, int]] = OrderedDict()

    def put(self, key: str, value: Any, size: int) -> None:
        old = self._values.pop(key, None)
        if old is not None:
            self.bytes -= old[1]
        self._values[key] = (value, size)
        self.bytes += size
        while self.bytes > self.max_bytes and len(self._values) > 1:
            _, (_, dropped) = self._values.popitem(last=False)
            self.bytes -= dropped

    def __getitem__(self, key: str) -> Any:
        value, _ = self._values[key]
        self._values.move_to_end(key)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


class RunStorage:
    """Stored values for the runs of one operator."""

    def __init__(self, values: Values, objects: Objects, *, bucket: str, key_prefix: str,
                 cache_bytes: int, backoff: float = BACKOFF_SECONDS) -> None:
        self._values = values
        self._objects = objects
        self.bucket = bucket
        self._key_prefix = key_prefix  # the store's own prefix, before every key
        self.cache = ValueCache(cache_bytes)
        self._slots = asyncio.Semaphore(CONCURRENCY)
        self._backoff = backoff

    def target(self, ref: RunRef) -> engine.StoreTarget:
        prefix = run_prefix(ref.namespace, ref.workflow, ref.uid)
        return engine.StoreTarget(self.bucket, prefix, self._key_prefix + prefix)

    async def load(self, refs: Iterable[Any]) -> tuple[tuple[str, ...], dict[str, str]]:
        """Read each reference into the cache: (ids read, id -> why for those that failed)."""
        loaded: list[str] = []
        failed: dict[str, str] = {}
        for ref in refs:
            key = ref_id(ref)
            try:
                value = await self._with_retries(lambda r=ref: self._values.load(r),
                                                 f"read {key}")
            except StoreError as error:
                failed[key] = str(error)
                continue
            self.cache.put(key, value, ref_size(ref))
            loaded.append(key)
        return tuple(loaded), failed

    async def write_chunks(self, chunks: list[engine.Chunk]) -> None:
        """Write the chunks, each once (a retryable failure is the caller's to try again)."""
        for chunk in chunks:
            await self._call(lambda c=chunk: self._values.blobs.put(c.key, c.data))

    async def delete_run(self, ref: RunRef, reused: Iterable[Any],
                         live: set[str]) -> tuple[int, int]:
        """Delete the run's objects, and those it reused (`reused`: the `$ref`s of its
        spec.reuse), except what `live` keeps: full keys, and full prefixes (ending in
        `/`: a live run's own, or the item chunks a live run reuses). How many went, and how
        many stayed for a live run."""
        own = self._key_prefix
        candidates = [run_prefix(ref.namespace, ref.workflow, ref.uid)]
        for value in reused:
            key = value[REF].get("key") if isinstance(value[REF], dict) else None
            if isinstance(key, str) and key.startswith(own):
                candidates.append(key[len(own):])
        doomed: list[str] = []
        for candidate in candidates:
            if candidate.endswith("/"):
                listed = await self._call(lambda c=candidate: self._objects.list(c))
                doomed.extend(k for k, _ in listed)
            else:
                doomed.append(candidate)
        candidates_found = list(dict.fromkeys(doomed))
        doomed = [k for k in candidates_found if not _kept(own + k, live)]
        for key in doomed:
            await self._call(lambda k=key: self._objects.delete(k))
        return len(doomed), len(candidates_found) - len(doomed)

    def live(self, runs: Iterable[Mapping[str, Any]]) -> set[str]:
        """What the cleanup must keep for `runs` (WorkflowRun bodies): each one's own prefix,
        and what its spec.reuse refers to."""
        kept = reused_keys(runs)
        for run in runs:
            meta, spec = run["metadata"], run.get("spec") or {}
            workflow = (spec.get("workflowRef") or {}).get("name", "")
            kept.add(self._key_prefix + run_prefix(meta["namespace"], workflow, meta["uid"]))
        return kept

    async def sweep(self, namespaces: Iterable[str],
                    list_runs: Callable[[], Awaitable[list[dict[str, Any]]]]) -> int:
        """Delete the objects of runs that are gone (deleted while no operator watched):
        every object is listed first, then the runs, so an object listed belongs to a run
        that existed before the runs were listed (a run's objects are written only once it
        exists): a run it does not find is gone. How many objects went."""
        listed: list[tuple[str, int]] = []
        for namespace in list(namespaces) or [""]:
            prefix = f"{namespace}/" if namespace else ""
            listed += await self._call(lambda p=prefix: self._objects.list(p))
        if not listed:
            return 0
        live = self.live(await list_runs())
        own = self._key_prefix
        doomed = [key for key, _ in listed if key.count("/") >= 3 and not _kept(own + key, live)]
        for key in doomed:
            await self._call(lambda k=key: self._objects.delete(k))
        return len(doomed)

    async def _with_retries(self, call: Any, what: str) -> Any:
        for attempt in range(1, LOAD_TRIES + 1):
            try:
                return await self._call(call)
            except StoreError as error:
                if not error.retryable or attempt == LOAD_TRIES:
                    raise
                delay = self._backoff * 2 ** (attempt - 1)
                log.warning("Store call failed (%s), attempt %d of %d: %s; again in %.1fs",
                            what, attempt, LOAD_TRIES, error, delay)
                await asyncio.sleep(delay)  # a backoff between tries, not a wait on state
        raise AssertionError("unreachable")

    async def _call(self, call: Any) -> Any:
        async with self._slots:
            return await asyncio.to_thread(call)


def reused_keys(runs: Iterable[Mapping[str, Any]]) -> set[str]:
    """The full keys of documents, and the chunk prefixes of item outputs, that the runs'
    spec.reuse refer to: what the cleanup of an earlier run must keep."""
    keys: set[str] = set()
    for run in runs:
        for outputs in ((run.get("spec") or {}).get("reuse") or {}).values():
            for ref in refs_in(outputs):
                body = ref[REF]
                if isinstance(body, dict) and isinstance(body.get("key"), str):
                    keys.add(body["key"])
    return keys


def _kept(key: str, live: set[str]) -> bool:
    return key in live or any(p.endswith("/") and key.startswith(p) for p in live)
