"""The object store adapter (S3 and S3-compatible stores), for task outputs kept by
reference. `client` is the only module that imports boto3; the rest are pure."""

from conveyor.store.client import ObjectStore
from conveyor.store.errors import (
    AccessDeniedError,
    IntegrityError,
    ObjectNotFoundError,
    StoreError,
    StoreSettingsError,
    StoreTLSError,
)
from conveyor.store.refs import ObjectRef
from conveyor.store.settings import StoreSettings

__all__ = [
    "AccessDeniedError", "IntegrityError", "ObjectNotFoundError", "ObjectRef", "ObjectStore",
    "StoreError", "StoreSettings", "StoreSettingsError", "StoreTLSError",
]
