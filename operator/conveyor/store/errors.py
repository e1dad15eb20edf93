"""What can go wrong with the object store: one branch of Conveyor's error tree.

    ConveyorError
     ├── StoreSettingsError     the store's settings cannot be used; names the variable
     └── StoreError             an object store operation failed; the client error is the
          │                     cause; `retryable` says whether trying again can help
          ├── ObjectNotFoundError   no such key (or no such bucket)          (not retryable)
          ├── AccessDeniedError     the credentials or their rights are refused (not retryable)
          ├── IntegrityError        an object's size or sha256 is not its reference's
          │                         (not retryable: the stored bytes are wrong)
          └── StoreTLSError         no TLS connection with this CA / endpoint  (not retryable)

A network failure (refused, reset, timed out) and a 5xx/throttling answer are plain
`StoreError`s with `retryable` true. Messages never carry the secret key: they are built
from the operation, the bucket, the key and the server's error code only.
"""

from __future__ import annotations

from conveyor.errors import ConveyorError


class StoreSettingsError(ConveyorError):
    """The object store settings cannot be used; the message names the variable."""


class StoreError(ConveyorError):
    """An object store operation failed; the client's error, if any, is the cause."""

    retryable = True
    """Whether trying again can help (a store restarting, a connection lost, a 503), as
    opposed to a configuration or data to fix first."""


class ObjectNotFoundError(StoreError):
    """The key (or the bucket) does not exist."""

    retryable = False


class AccessDeniedError(StoreError):
    """The store refused the credentials (wrong secret, unknown access key) or their rights."""

    retryable = False


class IntegrityError(StoreError):
    """The bytes read back are not those the reference describes (size or sha256)."""

    retryable = False


class StoreTLSError(StoreError):
    """No TLS connection can be made: the certificate is not trusted or names another host."""

    retryable = False


# S3 error codes (`Error.Code` in an answer) by the branch they map to. Anything else is a
# plain StoreError, retryable only for the server-side and throttling codes below or a 5xx.
_NOT_FOUND = frozenset({"NoSuchKey", "NoSuchBucket", "NotFound", "404"})
_DENIED = frozenset({
    "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken",
    "ExpiredToken", "AuthorizationHeaderMalformed", "403",
})
_TRANSIENT = frozenset({
    "InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout", "Throttling",
    "ThrottlingException", "RequestTimeTooSkewed",
})


def for_answer(code: str, status: int, what: str) -> StoreError:
    """The domain error for an S3 error answer: `code` is its `Error.Code` (or the HTTP
    status as text for bodiless answers to HEAD), `status` its HTTP status."""
    message = f"{what}: the store answered {status} {code}".rstrip()
    if code in _NOT_FOUND or status == 404:
        return ObjectNotFoundError(message)
    if code in _DENIED or status in (401, 403):
        return AccessDeniedError(message)
    error = StoreError(message)
    error.retryable = code in _TRANSIENT or status >= 500 or status == 429
    return error
