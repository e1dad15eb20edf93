"""A pika IOLoop on a thread of its own, and the way other threads run work on it.

pika is not thread-safe: every channel operation must run on the loop's thread. Other threads
hand work in with `call`; one wake-up of the loop (`add_callback_threadsafe`) serves every call
queued meanwhile, so a burst of publishes costs one wake-up, not one each.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable

from pika.adapters.select_connection import IOLoop

log = logging.getLogger("conveyor.broker")


class IOThread:
    """Runs `target` (which starts the loop) on a daemon thread; `call` runs work there."""

    def __init__(self, name: str, target: Callable[[], None]) -> None:
        self.ioloop = IOLoop()
        self._thread = threading.Thread(target=target, name=f"amqp-{name}", daemon=True)
        self._calls: deque[Callable[[], None]] = deque()
        self._lock = threading.Lock()
        self._wake_pending = False
        self._stopped = False  # the loop has ended: calls run in place (under _lock)

    def start(self) -> None:
        self._thread.start()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout: float | None) -> None:
        self._thread.join(timeout)

    def call(self, fn: Callable[[], None]) -> None:
        """Run `fn` on the loop's thread: at once when already there (a confirm callback
        acking a task: no round trip), in place once the loop has stopped (the callee then
        sees a closed link and fails what it must)."""
        if threading.get_ident() == self._thread.ident:
            fn()
            return
        with self._lock:
            stopped = self._stopped
            if not stopped:
                self._calls.append(fn)
                wake = not self._wake_pending
                self._wake_pending = True
        if stopped:
            fn()
        elif wake:
            self.ioloop.add_callback_threadsafe(self.run_calls)

    def mark_stopped(self) -> None:
        """The loop has ended (or never started): from now on calls run in place."""
        with self._lock:
            self._stopped = True

    def run_calls(self) -> None:
        """Run every queued call, in order; one that raises is logged, not fatal."""
        with self._lock:
            self._wake_pending = False
        while self._calls:
            fn = self._calls.popleft()
            try:
                fn()
            except Exception:
                log.exception("Failed an operation on the AMQP link")
