"""The object store for e2e tests: its settings as the variables the operator, the workers and
the CLI read."""

from __future__ import annotations

from conveyor.store import StoreSettings


def store_env(settings: StoreSettings) -> dict[str, str]:
    """`CONVEYOR_S3_*` for `settings` (the test session's bucket and prefix)."""
    env = {"CONVEYOR_S3_BUCKET": settings.bucket, "CONVEYOR_S3_REGION": settings.region,
           "CONVEYOR_S3_ACCESS_KEY": settings.access_key,
           "CONVEYOR_S3_SECRET_KEY": settings.secret_key, "CONVEYOR_S3_PREFIX": settings.prefix}
    if settings.endpoint:
        env["CONVEYOR_S3_ENDPOINT"] = settings.endpoint
    return env
