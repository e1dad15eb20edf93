"""Starts of runs, one module per source: RabbitMQ events (`events`), Kafka records
(`kafka`, with `records` and `offsets` its pure parts) and cron schedules (`schedules`, over
the pure `conveyor.schedules`), sharing the run's creation (`starting`)."""

from conveyor.operator.triggers.events import MAX_EVENT_BYTES, TriggerRouter, event_id
from conveyor.operator.triggers.kafka import KafkaTriggers
from conveyor.operator.triggers.schedules import Scheduler
from conveyor.operator.triggers.starting import run_name, start_run

__all__ = ["MAX_EVENT_BYTES", "KafkaTriggers", "Scheduler", "TriggerRouter", "event_id",
           "run_name", "start_run"]
