"""Conditions as Kubernetes keeps them: one per type, lastTransitionTime moves only on a flip.

The clock is injectable (`now`, RFC 3339 text); without it the current UTC time is used. The
result is a new list, so "write status only when it differs" is a plain comparison.
"""

from datetime import UTC, datetime
from typing import Any

Condition = dict[str, Any]


def set_condition(  # noqa: PLR0917 (the fields of metav1.Condition, in their order)
    conditions: list[Condition],
    type_: str,
    status: str,
    reason: str,
    message: str,
    observed_generation: int | None = None,
    *,
    now: str | None = None,
) -> list[Condition]:
    """`conditions` with `type_` set; its lastTransitionTime kept unless `status` changes."""
    previous = find(conditions, type_)
    if previous is not None and previous.get("status") == status:
        moved_at = previous.get("lastTransitionTime")
    else:
        moved_at = now or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    condition: Condition = {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": moved_at,
    }
    if observed_generation is not None:
        condition["observedGeneration"] = observed_generation
    if previous is None:
        return [*conditions, condition]
    return [condition if c is previous else c for c in conditions]


def find(conditions: list[Condition], type_: str) -> Condition | None:
    """The condition of that type, if set."""
    return next((c for c in conditions if c.get("type") == type_), None)
