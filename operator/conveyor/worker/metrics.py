"""The worker's Prometheus metrics, in a registry of its own (no process-global state)."""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

log = logging.getLogger("conveyor.worker")

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300,
                    600, 1800, 3600)
OUTCOMES = ("succeeded", "failed", "retryable", "requeued")


class Metrics:
    """A worker's Prometheus metrics, in a registry of their own."""

    def __init__(self, task_type: str) -> None:
        self.registry = CollectorRegistry()
        self.task_type = task_type
        self._tasks = Counter(
            "conveyor_worker_tasks", "Task attempts finished by this worker, by outcome"
            " (succeeded, failed, retryable, requeued).",
            ["task_type", "outcome"], registry=self.registry)
        self._duration = Histogram(
            "conveyor_worker_task_duration_seconds", "Time a task function ran.",
            ["task_type"], buckets=DURATION_BUCKETS, registry=self.registry)
        self._in_flight = Gauge(
            "conveyor_worker_tasks_in_flight", "Tasks this worker holds now.",
            ["task_type"], registry=self.registry)
        self._dead_lettered = Counter(
            "conveyor_worker_dead_lettered", "Malformed task messages this worker"
            " dead-lettered, by reason.", ["task_type", "reason"], registry=self.registry)

        # One label set per worker: resolve the children once, not on every task.
        self._outcomes = {outcome: self._tasks.labels(task_type, outcome)
                          for outcome in OUTCOMES}
        self._task_duration = self._duration.labels(task_type)
        self._held = self._in_flight.labels(task_type)

    def finished(self, outcome: str, duration: float | None = None) -> None:
        self._outcomes[outcome].inc()
        if duration is not None:
            self._task_duration.observe(duration)

    def in_flight(self, delta: int) -> None:
        self._held.inc(delta)

    def dead_lettered(self, reason: str) -> None:
        self._dead_lettered.labels(self.task_type, reason).inc()

    def serve(self, address: str, port: int) -> bool:
        """Expose /metrics on address:port; a busy port is logged, not fatal: the worker
        serving tasks matters more than its metrics."""
        if port == 0:
            return False
        try:
            start_http_server(port, addr=address, registry=self.registry)
        except OSError as error:
            log.error("Failed to serve metrics address=%s port=%d error=%s", address, port,
                      error)
            return False
        log.info("Serving metrics address=%s port=%d", address, port)
        return True
