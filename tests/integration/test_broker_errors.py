"""Every failure of the real broker surfaces as a BrokerError with a `retryable` that says
whether waiting helps, never as pika's or a socket's own exception."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit, urlunsplit

import pytest

from conveyor.broker import (
    AccessRefusedError,
    Admin,
    BrokerError,
    ChannelClosedError,
    QueueMismatchError,
)
from conveyor.broker.settings import BrokerSettings
from conveyor.broker.topology import Queue, quorum

pytestmark = pytest.mark.integration


def _with(url: str, *, password: str | None = None, port: int | None = None) -> str:
    parts = urlsplit(url)
    user = parts.username or "guest"
    secret = password if password is not None else parts.password
    netloc = f"{user}:{secret}@{parts.hostname}:{port or parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_wrong_password_is_refused_and_not_retryable(amqp_url: str) -> None:
    with pytest.raises(AccessRefusedError) as caught:
        Admin(BrokerSettings(_with(amqp_url, password="not-the-password")))
    assert not caught.value.retryable
    assert "not-the-password" not in str(caught.value)


def test_a_broker_that_is_not_there_is_worth_waiting_for(amqp_url: str) -> None:
    with pytest.raises(BrokerError) as caught:
        Admin(BrokerSettings(_with(amqp_url, port=_closed_port())))
    assert type(caught.value) is BrokerError and caught.value.retryable


def test_refusals_over_a_request_carry_the_code_and_whether_to_retry(admin: Admin) -> None:
    # No such queue: 404, worth trying again once it is declared.
    with pytest.raises(ChannelClosedError) as missing:
        admin.bind("conveyor.test.no-such-queue", "nothing.#")
    assert missing.value.code == 404 and missing.value.retryable
    # The same queue with other arguments: a configuration to fix.
    admin.declare_queue(Queue("conveyor.test.mismatch", quorum()))
    try:
        with pytest.raises(QueueMismatchError) as mismatch:
            admin.declare_queue(Queue("conveyor.test.mismatch",
                                      quorum(**{"x-delivery-limit": 3})))
        assert not mismatch.value.retryable
        # The Admin goes on working after the broker closed its channel.
        assert admin.inspect("conveyor.test.mismatch") is not None
    finally:
        admin.delete_queue("conveyor.test.mismatch")
    # An exchange declared again with another type: 406, not retryable.
    admin.declare_exchanges()
    with pytest.raises(ChannelClosedError) as clash:
        admin._do(lambda ch: ch.exchange_declare("conveyor.tasks", "fanout", durable=True))
    assert clash.value.code == 406 and not clash.value.retryable
