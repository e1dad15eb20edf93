"""The probes' verdicts. Readiness (`unready`): the API server and the broker links, a TLS
failure at once and with its cause, any other outage after the grace period, with the last
error. Liveness (`stuck`): a background loop silent past its bound, not counting the time its
dependencies were down, so an outage of the API server or the broker never fails it."""

from __future__ import annotations

import time

from conveyor.broker import BrokerError, TLSCause, TLSError
from conveyor.operator.health import (
    API_GRACE,
    BROKER_GRACE,
    Beat,
    Health,
    LinkState,
    stuck,
    unready,
)
from conveyor.operator.metrics import Metrics
from unit.fakes import FakeKube, FakeLink

TLS = TLSError("cannot connect to RabbitMQ at amqps://u:***@rabbit:5671/: TLS hostname "
               "mismatch: the broker's certificate is not valid for 'rabbit'",
               TLSCause.HOSTNAME)
LOST = BrokerError("lost RabbitMQ at amqp://u:***@rabbit:5672/: reset")


def _health(*links: tuple[str, FakeLink]) -> Health:
    health = Health(FakeKube(), Metrics(), list(links))
    health.starting = None
    return health


# -- readiness, pure ------------------------------------------------------------------------

def test_ready_when_the_api_answered_and_the_links_are_up() -> None:
    links = [LinkState("events", True, None, None), LinkState("triggers", True, None, None)]
    assert unready(100.0, api_ok_at=90.0, links=links) == []


def test_unready_while_starting_and_when_the_api_server_is_silent_past_its_grace() -> None:
    assert unready(100.0, api_ok_at=100.0, links=[], starting="starting: x") == ["starting: x"]
    [problem] = unready(100.0 + API_GRACE + 1, api_ok_at=100.0, links=[])
    assert problem == f"API server unreachable for {API_GRACE + 1:.0f}s"


def test_a_broker_outage_is_unready_after_its_grace_a_tls_failure_at_once() -> None:
    down = [LinkState("events", False, 100.0, LOST)]
    assert unready(100.0 + BROKER_GRACE - 1, api_ok_at=130.0, links=down) == []
    [problem] = unready(100.0 + BROKER_GRACE + 1, api_ok_at=130.0, links=down)
    assert problem == f"broker link events down for {BROKER_GRACE + 1:.0f}s: {LOST}"
    [problem] = unready(100.0, api_ok_at=100.0, links=[LinkState("events", False, 100.0, TLS)])
    assert problem.startswith("broker link events cannot connect (hostname-mismatch): ")


# -- liveness, pure -------------------------------------------------------------------------

def test_a_loop_that_beats_within_its_bound_is_live_one_silent_past_it_is_stuck() -> None:
    beats = {"pools": Beat(100.0, 300.0, True), "api-probe": Beat(390.0, 120.0, False)}
    assert stuck(399.0, beats, dependencies_down_at=None) == []
    assert stuck(401.0, beats, dependencies_down_at=None) == [
        "background loop pools has not run for 301s"]


def test_silence_while_the_dependencies_are_down_does_not_count() -> None:
    beats = {"pools": Beat(100.0, 300.0, True)}
    # The broker was down until 350: the pool round hung on it; 300 s after, it would be stuck.
    assert stuck(600.0, beats, dependencies_down_at=350.0) == []
    assert stuck(651.0, beats, dependencies_down_at=350.0) == [
        "background loop pools has not run for 551s"]


def test_a_loop_that_does_not_wait_on_dependencies_is_stuck_whatever_they_do() -> None:
    beats = {"api-probe": Beat(100.0, 120.0, False)}
    assert stuck(221.0, beats, dependencies_down_at=220.0) == [
        "background loop api-probe has not run for 121s"]


# -- Health: the clock and the links' states fed to them --------------------------------------

def test_connected_links_are_healthy() -> None:
    health = _health(("events", FakeLink()), ("triggers", FakeLink()))
    assert health.unready() == [] and health.stuck() == [] and health.problems() == []


def test_a_new_health_is_unready_until_the_start_is_done_but_live() -> None:
    health = Health(FakeKube(), Metrics(), [("events", FakeLink())])
    assert health.unready() and health.stuck() == []


def test_a_link_that_fails_on_tls_is_unready_at_once_with_the_cause_and_the_url() -> None:
    events, triggers = FakeLink(), FakeLink()
    events.is_connected, events.last_failure = False, TLS
    health = _health(("events", events), ("triggers", triggers))
    [problem] = health.unready()
    assert problem.startswith("broker link events cannot connect (hostname-mismatch): ")
    assert "amqps://u:***@rabbit:5671/" in problem and "not valid for 'rabbit'" in problem
    assert health.stuck() == [], "a broker outage is no reason to restart"


def test_another_outage_is_unready_only_after_the_grace_with_the_last_error() -> None:
    link = FakeLink()
    link.is_connected = False
    link.last_failure = LOST
    health = _health(("events", link))
    assert health.unready() == [], "a reconnecting link has a grace period"
    health.down_since["events"] = time.monotonic() - BROKER_GRACE - 1
    [problem] = health.problems()
    assert problem.startswith("broker link events down for ")
    assert problem.endswith(": lost RabbitMQ at amqp://u:***@rabbit:5672/: reset")


def test_a_pool_round_hung_on_a_down_broker_stays_live() -> None:
    link = FakeLink()
    health = _health(("events", link))
    health.beat("pools", stuck_after=300.0)
    health.beats["pools"] = Beat(time.monotonic() - 1000, 300.0, True)
    link.is_connected = False
    assert health.stuck() == [], "the loop waits on the broker"
    link.is_connected = True
    assert health.stuck() == [], "and is given its bound again once the broker is back"
    health.dependencies_down_at = time.monotonic() - 301
    [problem] = health.stuck()
    assert problem.startswith("background loop pools has not run for ")


def test_a_link_that_connects_again_is_healthy_again() -> None:
    link = FakeLink()
    link.is_connected, link.last_failure = False, TLS
    health = _health(("events", link))
    assert health.problems()
    link.is_connected = True
    assert health.problems() == [] and "events" not in health.down_since
