"""The operator's Prometheus metrics, in a registry of its own (no module-level state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    """The operator's Prometheus metrics, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.runs = Gauge("conveyor_runs", "Runs the operator holds, by phase",
                          ["phase"], registry=r)
        self.runs_finished = Counter("conveyor_runs_finished_total", "Runs that ended, by phase",
                                     ["phase"], registry=r)
        self.events = Counter("conveyor_task_events_total",
                              "Worker events consumed, by status and effect",
                              ["status", "effect"], registry=r)
        self.trigger_events_dropped = Counter(
            "conveyor_trigger_events_dropped_total",
            "External events on the triggers queue (and Kafka records) acked without starting "
            "every run they match, by reason (too-large, too-deep, inputs-failed, rejected, "
            "failed; for Kafka records also malformed-json, filter-failed, key-failed)",
            ["reason"], registry=r)
        self.run_events_forwarded = Counter(
            "conveyor_kafka_run_events_total",
            "Run events forwarded to the Kafka topic, by outcome (delivered, failed: to be "
            "delivered again)", ["outcome"], registry=r)
        self.dispatched = Counter("conveyor_tasks_dispatched_total",
                                  "Task attempts published to their queues", registry=r)
        self.redispatched = Counter(
            "conveyor_tasks_redispatched_total",
            "Task attempts published again because their message was lost (lease ran out)",
            registry=r)
        self.dispatch_latency = Histogram(
            "conveyor_dispatch_latency_seconds",
            "From an event that made tasks ready to their publish being confirmed",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=r)
        self.task_duration = Histogram(
            "conveyor_task_duration_seconds",
            "From a task attempt's start to its result, as the operator saw them",
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 300, 1800),
            registry=r)
        self.kube_events = Counter("conveyor_kube_events_total",
                                   "Kubernetes Events of runs, by result (posted, error, "
                                   "superseded by a newer one before posting, dropped)",
                                   ["result"], registry=r)
        self.status_writes = Counter("conveyor_status_writes_total",
                                     "WorkflowRun and Workflow status writes, by outcome",
                                     ["kind", "outcome"], registry=r)
        self.backlog = Gauge("conveyor_pool_backlog", "Messages waiting in a task type's queue",
                             ["namespace", "workflow", "task_type"], registry=r)
        self.in_flight = Gauge("conveyor_pool_in_flight",
                               "Task attempts dispatched and not yet ended",
                               ["namespace", "workflow", "task_type"], registry=r)
        self.replicas = Gauge("conveyor_pool_replicas", "Replicas the autoscaler set",
                              ["namespace", "workflow", "task_type"], registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
