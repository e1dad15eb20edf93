"""The largest an API object got while something ran: `kubectl get -o json` every half second,
in a thread of its own (for the e2e tests and benchmarks of issue 11, whose WorkflowRun must
stay small the whole time, not only at the end)."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Mapping, Sequence


class LargestObject:
    """`with LargestObject(["-n", ns, "get", "cwr", name]) as watch:` ... `watch.largest`:
    the most bytes the object's JSON took, over `watch.reads` reads."""

    def __init__(self, get: Sequence[str], env: Mapping[str, str] | None = None,
                 interval: float = 0.5) -> None:
        self._argv = ["kubectl", *get, "-o", "json"]
        self._env = dict(env) if env is not None else None
        self._interval = interval
        self.largest = 0
        self.reads = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="largest-object", daemon=True)

    def __enter__(self) -> LargestObject:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _watch(self) -> None:
        while not self._stop.wait(self._interval):  # a sampling interval
            result = subprocess.run(self._argv, env=self._env, capture_output=True,
                                    timeout=30, check=False)
            if result.returncode == 0:
                self.largest = max(self.largest, len(result.stdout))
                self.reads += 1
