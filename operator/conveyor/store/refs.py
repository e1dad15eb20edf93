"""References to stored objects: what a task output carries instead of its bytes.

A reference names the object (bucket, key) and pins its content (size, sha256), so a reader
detects an object that was overwritten, truncated or corrupted after the write.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from conveyor.store.errors import IntegrityError

MAX_KEY_BYTES = 1024  # S3's limit on a key, in UTF-8 bytes
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class ObjectRef:
    bucket: str
    key: str
    size: int
    sha256: str
    """Lowercase hex digest of the object's bytes."""

    @classmethod
    def of(cls, bucket: str, key: str, data: bytes) -> ObjectRef:
        return cls(bucket, key, len(data), hashlib.sha256(data).hexdigest())

    def verify(self, data: bytes) -> bytes:
        """`data` if it is this reference's content; IntegrityError (naming the object, not
        its content) if not."""
        if len(data) != self.size:
            raise IntegrityError(
                f"s3://{self.bucket}/{self.key}: {len(data)} bytes read, {self.size} expected")
        digest = hashlib.sha256(data).hexdigest()
        if digest != self.sha256:
            raise IntegrityError(
                f"s3://{self.bucket}/{self.key}: sha256 {digest}, {self.sha256} expected")
        return data

    def to_json(self) -> dict[str, Any]:
        return {"bucket": self.bucket, "key": self.key, "size": self.size,
                "sha256": self.sha256}

    @classmethod
    def from_json(cls, value: Any) -> ObjectRef:
        """A reference from its JSON form; ValueError saying which field is wrong."""
        if not isinstance(value, dict):
            raise ValueError("an object reference must be a JSON object")
        bucket, key, size, sha = (value.get(f) for f in ("bucket", "key", "size", "sha256"))
        if not isinstance(bucket, str) or not bucket:
            raise ValueError("reference.bucket must be a non-empty string")
        if not isinstance(key, str):
            raise ValueError("reference.key must be a string")
        check_key(key)
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ValueError("reference.size must be a non-negative integer")
        if not isinstance(sha, str) or not _SHA256.match(sha):
            raise ValueError("reference.sha256 must be 64 lowercase hex digits")
        return cls(bucket, key, size, sha)


def check_key(key: str) -> str:
    """`key` if S3 can store it: non-empty and at most 1024 UTF-8 bytes; ValueError if not."""
    if not key:
        raise ValueError("an object key must not be empty")
    if len(key.encode()) > MAX_KEY_BYTES:
        raise ValueError(f"an object key is at most {MAX_KEY_BYTES} bytes in UTF-8")
    return key
