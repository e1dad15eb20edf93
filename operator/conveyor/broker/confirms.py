"""Bookkeeping of publisher confirms: which published messages the broker has not settled yet.

RabbitMQ numbers the messages of a channel in confirm mode 1, 2, 3, ... and settles them with
`basic.ack` / `basic.nack`, one tag or every tag up to one (`multiple`). Many messages are in
flight at once; on a new channel the numbering restarts and whatever was unsettled must be
sent again, in its original order.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger("conveyor.broker")


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


class Confirmation:
    """The broker's answer to one publish: settled once, by the link's I/O thread.

    A lighter `concurrent.futures.Future`: that one builds a Condition per instance, which cost
    a sixth of a worker's CPU at a few thousand messages per second. Here a plain lock guards
    the state and an Event exists only for whoever waits. From asyncio, bridge it with
    `add_done_callback` and `loop.call_soon_threadsafe`.
    """

    __slots__ = ("_callbacks", "_error", "_lock", "_settled", "_waiter")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._settled = False
        self._error: BaseException | None = None
        self._callbacks: list[Callable[[Confirmation], None]] | None = None
        self._waiter: threading.Event | None = None

    def done(self) -> bool:
        return self._settled

    def confirm(self) -> None:
        self._settle(None)

    def fail(self, error: BaseException) -> None:
        self._settle(error)

    def add_done_callback(self, callback: Callable[[Confirmation], None]) -> None:
        """Call `callback(self)` once settled: at once if it is, else on the settling thread."""
        with self._lock:
            if not self._settled:
                if self._callbacks is None:
                    self._callbacks = []
                self._callbacks.append(callback)
                return
        callback(self)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """Wait until settled; the error, or None if the broker confirmed the message."""
        with self._lock:
            if not self._settled:
                if self._waiter is None:
                    self._waiter = threading.Event()
                waiter: threading.Event | None = self._waiter
            else:
                waiter = None
        if waiter is not None and not waiter.wait(timeout):
            raise TimeoutError(f"no confirm within {timeout}s")
        return self._error

    def result(self, timeout: float | None = None) -> None:
        """Wait until settled; raise the error if there is one."""
        error = self.exception(timeout)
        if error is not None:
            raise error

    def _settle(self, error: BaseException | None) -> None:
        with self._lock:
            if self._settled:
                return
            self._settled = True
            self._error = error
            callbacks, self._callbacks = self._callbacks, None
            waiter = self._waiter
        if waiter is not None:
            waiter.set()
        for callback in callbacks or ():
            try:
                callback(self)
            except Exception:
                log.exception("Failed a callback of a publish confirmation")


async def settled(confirmations: list[Confirmation]) -> None:
    """Wait until the broker settled every one (confirmed or failed), without a thread or an
    asyncio future per message: the last one to settle wakes the loop once."""
    pending = [c for c in confirmations if not c.done()]
    if not pending:
        return
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    lock = threading.Lock()
    remaining = [len(pending)]

    def wake() -> None:
        if not done.done():
            done.set_result(None)

    def one_settled(_: Confirmation) -> None:
        with lock:
            remaining[0] -= 1
            last = remaining[0] == 0
        if last:
            loop.call_soon_threadsafe(wake)

    for confirmation in pending:
        confirmation.add_done_callback(one_settled)
    await done
