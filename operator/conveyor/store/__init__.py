"""The object store adapter (S3 and S3-compatible stores), for task outputs kept by
reference. `client` is the only module that imports boto3; `values` (the `$ref` form) and
the rest are pure; `loading` reads and writes values over any `Blobs`."""

from conveyor.store.client import ObjectStore
from conveyor.store.errors import (
    AccessDeniedError,
    IntegrityError,
    ObjectNotFoundError,
    StoreError,
    StoreSettingsError,
    StoreTLSError,
)
from conveyor.store.loading import Blobs, TooLargeError, Values
from conveyor.store.refs import ObjectRef
from conveyor.store.settings import StoreSettings

__all__ = [
    "AccessDeniedError", "Blobs", "IntegrityError", "ObjectNotFoundError", "ObjectRef",
    "ObjectStore", "StoreError", "StoreSettings", "StoreSettingsError", "StoreTLSError",
    "TooLargeError", "Values",
]
