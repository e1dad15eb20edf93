"""What can go wrong talking to the API server: `KubeError`, one branch of Conveyor's error
tree, and the mapping of everything the Kubernetes client, urllib3 and sockets raise onto it.

    ConveyorError
     └── KubeError   `status` is the HTTP status, 0 when no answer came (refused, reset,
                     timed out, TLS); `retryable` says whether trying again can help
"""

from __future__ import annotations

import contextlib
import json

import urllib3.exceptions
from kubernetes.client.exceptions import ApiException

from conveyor.errors import ConveyorError

# Statuses worth trying again: the server is overloaded, restarting or behind a proxy that is.
RETRYABLE_STATUSES = frozenset((0, 408, 429, 500, 502, 503, 504))


class KubeError(ConveyorError):
    """A call to the API server failed; `status` is its HTTP status (0 when none came)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409

    @property
    def retryable(self) -> bool:
        return self.status in RETRYABLE_STATUSES


def api_error(what: str, error: ApiException) -> KubeError:
    """A KubeError for an answer of the API server that is an error."""
    reason = error.reason or ""
    with contextlib.suppress(ValueError, AttributeError):
        reason = json.loads(error.body or "{}").get("message", reason)
    return KubeError(f"{what}: {reason}", int(error.status or 0))


# What a call can raise besides ApiException when no answer came: urllib3's errors (refused
# connections surface as MaxRetryError, resets as ProtocolError), and sockets' own.
TRANSPORT_ERRORS = (urllib3.exceptions.HTTPError, OSError)


def transport_error(what: str, error: BaseException) -> KubeError:
    """A KubeError for a call that got no answer; the message names the kind of failure,
    never a URL with credentials."""
    return KubeError(f"{what}: cannot reach the API server ({type(error).__name__})")


CALL_ERRORS = (ApiException, *TRANSPORT_ERRORS)
"""Everything a call of the Kubernetes client raises when it fails: catch these, then map
them with `to_kube_error`."""


def to_kube_error(what: str, error: BaseException) -> KubeError:
    """The KubeError for whatever a call raised (already one: unchanged)."""
    if isinstance(error, KubeError):
        return error
    if isinstance(error, ApiException):
        return api_error(what, error)
    return transport_error(what, error)

