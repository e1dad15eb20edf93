"""Whether this install was removed (`helm uninstall`), known by the time the operator stops.

Stopping alone says nothing: a restart, an upgrade and an uninstall all stop the pod. What
tells them apart is the operator's own Deployment: gone means uninstalled. By the time the
pod is told to stop, the uninstall has usually deleted the operator's RBAC too, so a GET then
is forbidden; a watch opened while the operator could still read keeps delivering, so a
thread holds one open on the Deployment all along and remembers what it saw.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from conveyor.kube import KubeError

log = logging.getLogger("conveyor.operator")

WATCH_SECONDS = 300
RETRY_SECONDS = 5.0


class RemovalWatch:
    """A daemon thread watching the operator's Deployment; `removed` once it went."""

    def __init__(self, wait_gone: Callable[[int], bool]) -> None:
        self._wait_gone = wait_gone  # one watch of up to N seconds: True if it is gone
        self.removed = False

    def start(self) -> None:
        # A daemon thread, not the loop's executor: a watch blocked in its read must not
        # hold the operator's exit (the loop's executor is joined on shutdown).
        threading.Thread(target=self._watch, name="removal-watch", daemon=True).start()

    def _watch(self) -> None:
        while not self.removed:
            try:
                self.removed = self._wait_gone(WATCH_SECONDS)
            except KubeError as error:
                log.debug("Watch of the operator's Deployment failed error=%s", error)
                time.sleep(RETRY_SECONDS)  # a thread of its own: nothing else waits on it
            except Exception:  # a thread that died would never tell: log, and watch again
                log.exception("Watch of the operator's Deployment failed unexpectedly")
                time.sleep(RETRY_SECONDS)
        log.info("The operator's Deployment is gone: the install is being removed")
