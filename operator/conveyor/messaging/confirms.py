"""Bookkeeping of publisher confirms: which published messages the broker has not settled yet.

RabbitMQ numbers the messages of a channel in confirm mode 1, 2, 3, ... and settles them with
`basic.ack` / `basic.nack`, one tag or every tag up to one (`multiple`). Many messages are in
flight at once; on a new channel the numbering restarts and whatever was unsettled must be
sent again, in its original order.
"""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


class ConfirmTracker(Generic[T]):
    """Messages sent on one channel and not yet settled, keyed by delivery tag."""

    def __init__(self) -> None:
        self._next_tag = 1
        # Insertion order is tag order, which `settle(multiple=True)` relies on.
        self._pending: dict[int, T] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def sent(self, item: T) -> int:
        """Record `item` as published; return its delivery tag."""
        tag = self._next_tag
        self._next_tag += 1
        self._pending[tag] = item
        return tag

    def settle(self, tag: int, multiple: bool) -> list[T]:
        """The items a `basic.ack`/`basic.nack` with this tag settles, oldest first."""
        if not multiple:
            item = self._pending.pop(tag, None)
            return [] if item is None else [item]
        settled: list[T] = []
        for pending in list(self._pending):
            if pending > tag:
                break
            settled.append(self._pending.pop(pending))
        return settled

    def reset(self) -> list[T]:
        """Forget the channel: return every unsettled item, oldest first, to be sent again."""
        unsettled = list(self._pending.values())
        self._pending.clear()
        self._next_tag = 1
        return unsettled
