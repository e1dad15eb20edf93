"""The object store as the CLI's user reaches it: settings from their `CONVEYOR_S3_*`
variables (the same names the operator and the workers read), stored values read back, and a
run's objects listed. Every failure of the store becomes one `CliError` (see `failed`).

A reference carries its bucket and full key, so reading one needs only the endpoint and a key
pair: `CONVEYOR_S3_BUCKET` may stay unset then. Listing a run's objects needs the bucket and
the prefix the operator was given (`CONVEYOR_S3_BUCKET`, `CONVEYOR_S3_PREFIX`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from conveyor.cli.common import NOT_FOUND, STORE, USAGE, CliError
from conveyor.cli.render import table
from conveyor.store import Blobs, ObjectStore, Values
from conveyor.store.errors import ObjectNotFoundError, StoreError, StoreSettingsError
from conveyor.store.loading import DEFAULT_MAX_OBJECT_BYTES, MAX_OBJECT_ENV
from conveyor.store.settings import (
    ACCESS_KEY_ENV,
    BUCKET_ENV,
    CA_FILE_ENV,
    ENDPOINT_ENV,
    REGION_ENV,
    SECRET_KEY_ENV,
    StoreSettings,
)
from conveyor.store.values import REF, ItemsRef, parse, refs_in, run_prefix

# How long the CLI waits for a store before saying it did not answer: a person is waiting.
CONNECT_SECONDS = 3.0
READ_SECONDS = 30.0
HOW_TO_CONFIGURE = (f"{ACCESS_KEY_ENV} and {SECRET_KEY_ENV} (and {ENDPOINT_ENV}, "
                    f"{REGION_ENV}, {CA_FILE_ENV} as the store needs)")


class Store(Blobs, Protocol):
    """What the CLI uses of `ObjectStore` (an in-memory one in unit tests)."""

    def list(self, prefix: str = "") -> list[tuple[str, int]]: ...
    def __enter__(self) -> Store: ...
    def __exit__(self, *exc: object) -> None: ...


Open = Callable[[StoreSettings], Store]


def open_store(found: StoreSettings) -> Store:
    return ObjectStore(found, connect_timeout=CONNECT_SECONDS, read_timeout=READ_SECONDS)


@dataclass(frozen=True)
class UserStore:
    """The store the user's environment describes, opened only when a command needs it."""

    env: Mapping[str, str] = field(default_factory=lambda: os.environ)
    open: Open = open_store

    @property
    def configured(self) -> bool:
        """Whether the user set up a store at all (any of its key pair or bucket)."""
        return any(self.env.get(name) for name in (ACCESS_KEY_ENV, SECRET_KEY_ENV, BUCKET_ENV))

    def settings(self, bucket: str | None = None) -> StoreSettings:
        """The user's store settings; `bucket` stands in for an unset `CONVEYOR_S3_BUCKET` (a
        reference's own). A usage CliError naming the variable when they cannot be used."""
        given = dict(self.env)
        if bucket and not given.get(BUCKET_ENV):
            given[BUCKET_ENV] = bucket
        try:
            return StoreSettings.from_env(given)
        except StoreSettingsError as error:
            raise CliError(f"object store: {error}", USAGE) from error

    @property
    def max_bytes(self) -> int:
        raw = self.env.get(MAX_OBJECT_ENV) or str(DEFAULT_MAX_OBJECT_BYTES)
        if not raw.isdigit() or int(raw) < 1:
            raise CliError(f"{MAX_OBJECT_ENV}: {raw!r} is not a positive number of bytes",
                           USAGE)
        return int(raw)

    def resolve(self, value: Any, what: str) -> Any:
        """`value` with its references (where `refs_in` finds them) read from the store: the
        value itself when it holds none, without touching the store or its settings."""
        refs = refs_in(value)
        if not refs:
            return value
        if not self.configured:
            raise CliError(f"{what}: kept in the object store ({where(refs[0])}) but no "
                           f"store is configured: set {HOW_TO_CONFIGURE}", STORE)
        found = self.settings(_bucket(refs))
        with failed(f"read {what}"), self.open(found) as store:
            return Values(store, max_bytes=self.max_bytes).resolve(value)

    def listing(self, run: Mapping[str, Any]) -> tuple[str | None, str | None]:
        """(a table of the run's stored objects, or None; a one-line note, or None) for
        `get`. Never fails: a store not configured, misconfigured or down is the note."""
        refs = run_refs(run)
        if not self.configured:
            # Quiet for the many installs without a store; a note only when it would matter.
            if not refs:
                return None, None
            return None, (f"stored objects not listed: the run has {len(refs)} stored "
                          f"value(s) and no object store is configured: set {BUCKET_ENV}, "
                          f"{HOW_TO_CONFIGURE}")
        if not refs and not self.env.get(BUCKET_ENV):
            return None, None  # no bucket to look in, and the run names none: nothing to say
        meta = run.get("metadata") or {}
        workflow = ((run.get("spec") or {}).get("workflowRef") or {}).get("name", "")
        prefix = run_prefix(meta.get("namespace", ""), workflow, meta.get("uid", ""))
        try:
            found = self.settings(_bucket(refs))
            with self.open(found) as store:
                objects = store.list(prefix)
        except (CliError, StoreError) as error:
            return None, f"stored objects not listed: {error}"
        place = f"s3://{found.bucket}/{found.full_key(prefix)}"
        if not objects:
            return None, f"no stored objects under {place}"
        rows = [[key.removeprefix(prefix), size] for key, size in objects]
        return f"stored objects under {place}\n" + table(["KEY", "SIZE"], rows), None


def _bucket(refs: list[Any]) -> str | None:
    """The bucket the first reference names (None when it is malformed: reading it says
    what is wrong with it)."""
    try:
        return parse(refs[0]).bucket if refs else None
    except ValueError:
        return None


@contextmanager
def failed(what: str) -> Iterator[None]:
    """A store failure as the CLI reports it: a gone object is "not found", the rest the
    store's (unreachable, refused credentials, damaged objects). Messages name objects, never
    a key pair."""
    try:
        yield
    except ObjectNotFoundError as error:
        raise CliError(f"{what}: {error}", NOT_FOUND) from error
    except StoreError as error:
        raise CliError(f"{what}: {error}", STORE) from error


def where(ref: Any) -> str:
    """`s3://bucket/key` of a `$ref` value, for messages."""
    try:
        stored = parse(ref)
    except ValueError:
        return f"a malformed {REF}"
    key = stored.prefix if isinstance(stored, ItemsRef) else stored.key
    return f"s3://{stored.bucket}/{key}"


def run_refs(run: Mapping[str, Any]) -> list[Any]:
    """The references in a run's status: its tasks' outputs and its own."""
    status = run.get("status") or {}
    found = refs_in(status.get("outputs"))
    for task in status.get("tasks") or []:
        found += refs_in(task.get("outputs"))
    return found
