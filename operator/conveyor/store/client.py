"""The object store adapter: the one module that imports boto3/botocore.

Every call maps the client's errors to `conveyor.store.errors` (see `_mapped`). botocore's
own retries are off: one call is one request, and the caller decides from `retryable`
whether to try again, as it does for the broker and the API server.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import boto3
import botocore.config
import botocore.exceptions

from conveyor.store.errors import StoreError, StoreTLSError, for_answer
from conveyor.store.refs import ObjectRef, check_key
from conveyor.store.settings import StoreSettings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_DELETE_BATCH = 1000  # DeleteObjects takes at most this many keys per request


class ObjectStore:
    """Objects under `settings.prefix` in `settings.bucket`.

    Keys given to `put`, `delete`, `delete_prefix` and `list` are relative to the prefix; a
    reference's key is the full key in its bucket, so it can be read without the settings
    that wrote it.
    """

    def __init__(self, settings: StoreSettings, *, connect_timeout: float = 5,
                 read_timeout: float = 30, max_connections: int = 10) -> None:
        """`max_connections`: the connection pool's size, at least the number of threads
        that share this client (past it, a thread opens a connection of its own and drops it
        after its request)."""
        self.settings = settings
        config = botocore.config.Config(
            region_name=settings.region,
            signature_version="s3v4",
            # Path style works with every S3-compatible store and needs no wildcard DNS.
            s3={"addressing_style": "path"},
            retries={"total_max_attempts": 1},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_pool_connections=max_connections,
            # Integrity is ours (Content-MD5 on write, size and sha256 on read); the newer
            # default of checksum trailers in aws-chunked bodies is not served by every store.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        self._s3: S3Client = boto3.session.Session().client(
            "s3",
            endpoint_url=settings.endpoint,
            aws_access_key_id=settings.access_key,
            aws_secret_access_key=settings.secret_key,
            verify=str(settings.ca_file) if settings.ca_file else True,
            config=config,
        )

    def put(self, key: str, data: bytes) -> ObjectRef:
        """Store `data` at `key` (replacing what was there); its reference."""
        full = self.settings.full_key(check_key(key))
        md5 = base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()
        with _mapped(f"put s3://{self.settings.bucket}/{full}"):
            self._s3.put_object(Bucket=self.settings.bucket, Key=full, Body=data,
                                ContentMD5=md5)
        return ObjectRef.of(self.settings.bucket, full, data)

    def get(self, ref: ObjectRef) -> bytes:
        """The referenced bytes, verified; IntegrityError if they are not the reference's."""
        with _mapped(f"get s3://{ref.bucket}/{ref.key}"):
            answer = self._s3.get_object(Bucket=ref.bucket, Key=ref.key)
            # One byte more than expected is enough to tell a longer object, without reading
            # a large replacement whole.
            with answer["Body"] as body:
                data = body.read(ref.size + 1)
        return ref.verify(data)

    def read(self, bucket: str, key: str, limit: int) -> bytes:
        """At most `limit` + 1 bytes of the object at full key `key` (one more than allowed
        tells the caller it is too large without reading it whole); unverified."""
        with _mapped(f"get s3://{bucket}/{key}"):
            answer = self._s3.get_object(Bucket=bucket, Key=key)
            with answer["Body"] as body:
                return body.read(limit + 1)

    def delete(self, key: str) -> None:
        """Delete `key`; deleting a missing key is not an error (S3's own rule)."""
        full = self.settings.full_key(check_key(key))
        with _mapped(f"delete s3://{self.settings.bucket}/{full}"):
            self._s3.delete_object(Bucket=self.settings.bucket, Key=full)

    def list(self, prefix: str = "") -> list[tuple[str, int]]:
        """(key, size) of each object whose key starts with `prefix`, keys relative to the
        settings' prefix, in key order."""
        return [(key[len(self.settings.prefix):], size) for key, size in self._walk(prefix)]

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object whose key starts with `prefix` (not empty: that would be the
        whole store); how many there were."""
        if not prefix:
            raise ValueError("delete_prefix needs a non-empty prefix")
        keys = [key for key, _ in self._walk(prefix)]
        bucket = self.settings.bucket
        for start in range(0, len(keys), _DELETE_BATCH):
            batch = keys[start:start + _DELETE_BATCH]
            with _mapped(f"delete {len(batch)} objects under s3://{bucket}/"
                         f"{self.settings.full_key(prefix)}"):
                answer = self._s3.delete_objects(
                    Bucket=bucket,
                    Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True})
            failed = answer.get("Errors", [])
            if failed:
                first = failed[0]
                raise for_answer(first.get("Code", ""), 500 if first.get("Code") in (
                    None, "InternalError") else 400,
                    f"delete s3://{bucket}/{first.get('Key', '')} ({len(failed)} failed)")
        return len(keys)

    def _walk(self, prefix: str) -> Iterator[tuple[str, int]]:
        full = self.settings.full_key(prefix)
        pages = self._s3.get_paginator("list_objects_v2")
        with _mapped(f"list s3://{self.settings.bucket}/{full}"):
            for page in pages.paginate(Bucket=self.settings.bucket, Prefix=full):
                for item in page.get("Contents", []):
                    yield item["Key"], item["Size"]

    def close(self) -> None:
        self._s3.close()

    def __enter__(self) -> ObjectStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def _mapped(what: str) -> Iterator[None]:
    """Turn botocore's errors into the store's. Messages are built here from `what` and the
    error's code or class, never from the request, so no credential can leak into them."""
    try:
        yield
    except botocore.exceptions.ClientError as exc:
        answer = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        raise for_answer(str(answer.get("Code", status)), status, what) from exc
    except botocore.exceptions.SSLError as exc:
        raise StoreTLSError(f"{what}: TLS failed ({type(exc).__name__}); check "
                            "CONVEYOR_S3_CA_FILE and the endpoint's name") from exc
    except (botocore.exceptions.ConnectionError,  # refused, connect timeout (not HTTPClient)
            botocore.exceptions.HTTPClientError,
            botocore.exceptions.ResponseStreamingError) as exc:
        # Refused, reset, timed out, closed mid-answer: the store may be back soon.
        raise StoreError(f"{what}: no answer from the store ({type(exc).__name__})") from exc
    except botocore.exceptions.BotoCoreError as exc:
        failure = StoreError(f"{what}: {type(exc).__name__}")
        failure.retryable = False  # a client-side problem (parameters, credentials): fix first
        raise failure from exc
