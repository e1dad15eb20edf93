"""Whether a failed attempt is tried again, and the record of it that the status keeps.

Why an attempt failed is its reason; the task's `retry.policy` names the reasons it retries
(DESIGN.md §7), while `retry.limit` allows another attempt:

    reason          Always  OnFailure  OnTimeout  Never
    Error             yes      yes        -         -     the task raised
    Lost              yes      yes        -         -     its workers were lost deliveryLimit times
    Timeout           yes       -        yes        -     it outlived timeoutSeconds
    NonRetryable       -        -         -         -     the worker marked the failure final
    OutputTooLarge     -        -         -         -     the same outputs would come back

A lost worker counts as a failure of the task (a crash or an out-of-memory kill of its code,
most likely), not as a timeout.
"""

from collections.abc import Mapping
from types import MappingProxyType

from conveyor.engine.progress import (
    ERROR,
    LOST,
    NON_RETRYABLE,
    OUTPUT_TOO_LARGE,
    TIMEOUT,
    AttemptFailure,
    TaskState,
)
from conveyor.models import MAX_ATTEMPT_MESSAGE, Retry, RetryPolicy

RETRIED: Mapping[RetryPolicy, frozenset[str]] = MappingProxyType({
    "Always": frozenset((ERROR, LOST, TIMEOUT)),
    "OnFailure": frozenset((ERROR, LOST)),
    "OnTimeout": frozenset((TIMEOUT,)),
    "Never": frozenset(),
})
MAX_ERROR_TYPE = 256  # characters of an exception's class name kept in the status


def retried(retry: Retry, reason: str, attempt: int) -> bool:
    """Whether attempt `attempt` (from 1), failed for `reason`, is followed by another."""
    return attempt <= retry.limit and reason in RETRIED[retry.policy]


def refusal(retry: Retry, reason: str, attempt: int) -> str | None:
    """Why attempt `attempt`, failed for `reason`, is the last though `retry.limit` allows
    more (for the task's message); None when it is retried, or no attempt is left."""
    if attempt > retry.limit or reason in RETRIED[retry.policy]:
        return None
    if reason in RETRIED["Always"]:
        return f"not retried: retry.policy is {retry.policy}"
    return f"not retried: {reason}"


def worker_reason(retryable: bool, said: str | None) -> str:
    """Why a failure the worker reported ended the attempt. `retryable` rules (an older worker
    sends no reason, and a newer one's unknown reason is read by it); a lost worker is the
    one retryable reason besides Error, outputs over the worker's cap the one final reason
    besides NonRetryable."""
    if not retryable:
        return OUTPUT_TOO_LARGE if said == OUTPUT_TOO_LARGE else NON_RETRYABLE
    return LOST if said == LOST else ERROR


def record(task: TaskState, i: int, reason: str, error: str, *, error_type: str | None,
           started_at: int | None, now: int, retried: bool) -> None:
    """Keep the failed attempt of instance `i` among the task's latest failures (the oldest
    goes past MAX_FAILED_ATTEMPTS), its error cut to MAX_ATTEMPT_MESSAGE characters."""
    task.failures.append(AttemptFailure(
        attempt=task.attempt_of[i],
        index=None if task.spec.for_each is None else i,
        reason=reason,
        error_type=error_type[:MAX_ERROR_TYPE] if error_type else None,
        message=error[:MAX_ATTEMPT_MESSAGE] or None,
        started_at=started_at,
        finished_at=now,
        retried=retried,
    ))
