"""Supervision of the operator's long-running background loops: one that dies of an exception
it did not expect is logged with its traceback and started again after a pause, so no loop
(the autoscaler, the API probe) is lost for the rest of the process's life."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger("conveyor.operator")

RESTART_SECONDS = 1.0


async def supervised(name: str, loop: Callable[[], Coroutine[Any, Any, None]], *,
                     restart_seconds: float = RESTART_SECONDS) -> None:
    """Run `loop()` until it returns or is cancelled; restart it whenever it raises."""
    while True:
        try:
            await loop()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("Background loop failed; restarting in %.1fs loop=%s",
                          restart_seconds, name)
        await asyncio.sleep(restart_seconds)
