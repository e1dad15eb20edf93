"""Event-driven starts, one module per source: RabbitMQ events (`events`) and Kafka records
(`kafka`, with `records` and `offsets` its pure parts), sharing the run's name and creation
(`starting`)."""

from conveyor.operator.triggers.events import MAX_EVENT_BYTES, TriggerRouter, event_id
from conveyor.operator.triggers.kafka import KafkaTriggers
from conveyor.operator.triggers.starting import run_name, start_run

__all__ = ["MAX_EVENT_BYTES", "KafkaTriggers", "TriggerRouter", "event_id", "run_name",
           "start_run"]
