"""The object store for e2e tests: its settings as the variables the operator, the workers and
the CLI read."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from conveyor.store import StoreSettings
from testbed import objectstore, parts
from testbed.layout import paths, ports


def store_env(settings: StoreSettings) -> dict[str, str]:
    """`CONVEYOR_S3_*` for `settings` (the test session's bucket and prefix)."""
    env = {"CONVEYOR_S3_BUCKET": settings.bucket, "CONVEYOR_S3_REGION": settings.region,
           "CONVEYOR_S3_ACCESS_KEY": settings.access_key,
           "CONVEYOR_S3_SECRET_KEY": settings.secret_key, "CONVEYOR_S3_PREFIX": settings.prefix}
    if settings.endpoint:
        env["CONVEYOR_S3_ENDPOINT"] = settings.endpoint
    return env


@contextmanager
def store_down(settings: StoreSettings) -> Iterator[None]:
    """The test bed's object store killed for the block, then started again. It keeps
    objects in memory, so the restart empties it, buckets too: the session's bucket is made
    again for the tests that follow."""
    p, ports_ = paths(), ports()
    assert parts.kill(p, objectstore.NAME), "the object store was not running"
    try:
        yield
    finally:
        parts.restart(p, ports_, objectstore.NAME)
        s3 = objectstore.client(p, ports_)
        s3.create_bucket(Bucket=settings.bucket)
        s3.close()
