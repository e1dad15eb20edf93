"""The broker's password stays out of every log record and error, pika's own at DEBUG
included: the operator and the worker turn pika's logger down for its noise, and that must not
be what keeps the password out. Connects, publishes, a refused broker and a wrong password
(a wrong password is someone's mistyped real one: it stays out too)."""

from __future__ import annotations

import base64
import logging
import socket
import traceback
import urllib.parse
from collections.abc import Iterator

import pytest

from conveyor.broker import Admin, BrokerError, BrokerSettings, Link, oneshot
from support.waiting import eventually

pytestmark = pytest.mark.integration

WRONG_PASSWORD = "not-the-Password-42"


def _closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _with(url: str, *, password: str | None = None, port: int | None = None) -> BrokerSettings:
    parts = urllib.parse.urlsplit(url)
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:{password or parts.password}@{host}:{port or parts.port}"
    return BrokerSettings(urllib.parse.urlunsplit(parts._replace(netloc=netloc)),
                          name="conveyor-tests-secrets")


@pytest.fixture
def everything_at_debug(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every logger at DEBUG, pika's too, whatever a front end set it to."""
    pika_logger = logging.getLogger("pika")
    before = pika_logger.level
    pika_logger.setLevel(logging.DEBUG)
    caplog.set_level(logging.DEBUG)
    yield caplog
    pika_logger.setLevel(before)


def _texts(records: list[logging.LogRecord], errors: list[BaseException]) -> list[str]:
    texts = [f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in records]
    for record in records:
        if record.exc_info and record.exc_info[1] is not None:
            texts.append("".join(traceback.format_exception(record.exc_info[1])))
    for error in errors:  # with the chained causes, as a traceback in a log would show them
        texts += [str(error), repr(error), "".join(traceback.format_exception(error))]
    return texts


def test_pika_and_the_adapter_at_debug_say_neither_the_password_nor_a_wrong_one(
        broker: BrokerSettings, everything_at_debug: pytest.LogCaptureFixture) -> None:
    password = urllib.parse.unquote(urllib.parse.urlsplit(broker.url).password or "")
    assert len(password) >= 8
    errors: list[BaseException] = []

    with Admin(broker) as admin:  # a good connection: pika's whole handshake at DEBUG
        admin.declare_exchanges()
    link = Link(broker, name="conveyor-tests-secrets").start()
    eventually(lambda: link.connected, 30, what="the link to connect")
    link.close()

    refused = _with(broker.url, port=_closed_port())
    wrong = _with(broker.url, password=WRONG_PASSWORD)
    for settings in (refused, wrong):
        with pytest.raises(BrokerError) as failed:
            oneshot.publish_confirmed(settings, "conveyor.events", "x", b"{}", message_id="m")
        errors.append(failed.value)
        with pytest.raises(BrokerError) as failed:
            Admin(settings)
        errors.append(failed.value)
        retrying = Link(settings, name="conveyor-tests-secrets").start()
        eventually(lambda: any("Lost RabbitMQ connection" in r.getMessage()
                               for r in everything_at_debug.records[-50:]), 30,
                   what="the link to retry")
        retrying.close()

    records = everything_at_debug.records
    assert any(r.name.startswith("pika") and r.levelno == logging.DEBUG for r in records), \
        "pika's DEBUG records were not captured: the test would prove nothing"
    for value in (password, WRONG_PASSWORD, broker.url):
        encoded = base64.b64encode(value.encode()).decode()
        found = [i for i, t in enumerate(_texts(records, errors)) if value in t or encoded in t]
        assert not found, f"a secret in {len(found)} log records or errors"
