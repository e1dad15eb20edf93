"""`/healthz`'s verdict on the broker links: a TLS failure at once and with its cause, any
other outage after the grace period, with the last error."""

from __future__ import annotations

import time

from conveyor.broker import BrokerError, TLSCause, TLSError
from conveyor.operator.health import BROKER_GRACE, Health
from conveyor.operator.metrics import Metrics
from unit.fakes import FakeKube, FakeLink

TLS = TLSError("cannot connect to RabbitMQ at amqps://u:***@rabbit:5671/: TLS hostname "
               "mismatch: the broker's certificate is not valid for 'rabbit'",
               TLSCause.HOSTNAME)


def _health(*links: tuple[str, FakeLink]) -> Health:
    return Health(FakeKube(), Metrics(), list(links))


def test_connected_links_are_healthy() -> None:
    assert _health(("events", FakeLink()), ("triggers", FakeLink())).problems() == []


def test_a_link_that_fails_on_tls_is_unhealthy_at_once_with_the_cause_and_the_url() -> None:
    events, triggers = FakeLink(), FakeLink()
    events.is_connected, events.last_failure = False, TLS
    [problem] = _health(("events", events), ("triggers", triggers)).problems()
    assert problem.startswith("broker link events cannot connect (hostname-mismatch): ")
    assert "amqps://u:***@rabbit:5671/" in problem and "not valid for 'rabbit'" in problem


def test_another_outage_is_unhealthy_only_after_the_grace_with_the_last_error() -> None:
    link = FakeLink()
    link.is_connected = False
    link.last_failure = BrokerError("lost RabbitMQ at amqp://u:***@rabbit:5672/: reset")
    health = _health(("events", link))
    assert health.problems() == [], "a reconnecting link has a grace period"
    health.down_since["events"] = time.monotonic() - BROKER_GRACE - 1
    [problem] = health.problems()
    assert problem.startswith("broker link events down for ")
    assert problem.endswith(": lost RabbitMQ at amqp://u:***@rabbit:5672/: reset")


def test_a_link_that_connects_again_is_healthy_again() -> None:
    link = FakeLink()
    link.is_connected, link.last_failure = False, TLS
    health = _health(("events", link))
    assert health.problems()
    link.is_connected = True
    assert health.problems() == [] and "events" not in health.down_since
