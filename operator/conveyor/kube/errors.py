"""What can go wrong talking to the API server: `KubeError`, one branch of Conveyor's error
tree, and the mapping of everything the Kubernetes client, urllib3 and sockets raise onto it.

    ConveyorError
     └── KubeError   `status` is the HTTP status, 0 when no answer came (refused, reset,
                     timed out, TLS); `retryable` says whether trying again can help, and
                     `retry_after` when (the server's Retry-After, as on a 429)
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Callable
from typing import Concatenate, ParamSpec, TypeVar

import urllib3.exceptions
from kubernetes.client.exceptions import ApiException

from conveyor.errors import ConveyorError

# Statuses worth trying again: the server is overloaded, restarting or behind a proxy that is.
RETRYABLE_STATUSES = frozenset((0, 408, 429, 500, 502, 503, 504))
MAX_RETRY_AFTER = 60.0


class KubeError(ConveyorError):
    """A call to the API server failed; `status` is its HTTP status (0 when none came)."""

    def __init__(self, message: str, status: int = 0, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        """Seconds the server asked to wait before trying again, if it did."""

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409

    @property
    def retryable(self) -> bool:
        return self.status in RETRYABLE_STATUSES

    def delay(self, default: float) -> float:
        """How long to wait before trying again: the server's Retry-After when it gave one
        (bounded: a wild header must not park a run for hours), else `default`."""
        if self.retry_after is None:
            return default
        return max(default, min(self.retry_after, MAX_RETRY_AFTER))


def api_error(what: str, error: ApiException) -> KubeError:
    """A KubeError for an answer of the API server that is an error."""
    reason = error.reason or ""
    with contextlib.suppress(ValueError, AttributeError):
        reason = json.loads(error.body or "{}").get("message", reason)
    return KubeError(f"{what}: {reason}", int(error.status or 0), _retry_after(error))


def _retry_after(error: ApiException) -> float | None:
    """The Retry-After header in seconds (the API server's priority and fairness sends one
    with a 429); an HTTP date or garbage counts as absent."""
    headers = error.headers or {}
    raw = headers.get("Retry-After") or headers.get("retry-after")
    try:
        seconds = float(raw) if raw is not None else None
    except (TypeError, ValueError):
        return None
    return seconds if seconds is not None and seconds >= 0 else None


# What a call can raise besides ApiException when no answer came: urllib3's errors (refused
# connections surface as MaxRetryError, resets as ProtocolError), and sockets' own.
TRANSPORT_ERRORS = (urllib3.exceptions.HTTPError, OSError)


def transport_error(what: str, error: BaseException) -> KubeError:
    """A KubeError for a call that got no answer; the message names the kind of failure,
    never a URL with credentials."""
    return KubeError(f"{what}: cannot reach the API server ({type(error).__name__})")


P = ParamSpec("P")
T = TypeVar("T")
S = TypeVar("S")


def answered(call: Callable[Concatenate[S, P], T]) -> Callable[Concatenate[S, P], T]:
    """A method that fails only with `KubeError`: what the client lets through when no answer
    came (urllib3's errors, sockets', TLS) is mapped here, so a caller on any thread (the run
    loop's facade, the leader election's) catches one type and nothing dies unmapped."""
    what = call.__name__.replace("_", " ")

    @functools.wraps(call)
    def mapped(self: S, /, *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return call(self, *args, **kwargs)
        except TRANSPORT_ERRORS as error:
            raise transport_error(what, error) from error

    return mapped

