"""amqps against the test bed's real TLS listener: a round trip verified with the broker's CA,
and each misconfiguration (another CA, a name the certificate does not carry, the plain port)
failing within seconds with a TLSError that names the URL, password masked, and the cause."""

from __future__ import annotations

import logging
import os
import secrets
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conveyor import names
from conveyor.broker import Admin, BrokerSettings, Delivery, Link, TLSCause, TLSError
from support.waiting import eventually
from testbed import rabbitmq
from testbed.layout import paths, ports

pytestmark = pytest.mark.integration

FAST = 5.0  # seconds: every failure here is a verdict of the handshake, not a timeout
WORKER = Path(sys.executable).parent / "conveyor-worker"
HERE = Path(__file__).resolve().parent


def _with(url: str, host: str | None = None, port: int | None = None, query: str = "") -> str:
    parts = urllib.parse.urlsplit(url)
    netloc = (f"{parts.username}:{parts.password}@{host or parts.hostname}:"
              f"{port or parts.port}")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc, query=query))


def _password(url: str) -> str:
    password = urllib.parse.urlsplit(url).password
    assert password
    return password


@pytest.fixture
def tls(broker_tls) -> BrokerSettings:  # type: ignore[no-untyped-def]
    return BrokerSettings(broker_tls.url, str(broker_tls.ca_file), name="test-tls")


@pytest.fixture
def misconfigured(broker_tls, amqp_url: str) -> dict[str, tuple[BrokerSettings, TLSCause]]:  # type: ignore[no-untyped-def]
    """Each way to get amqps wrong, with the cause it must be reported as."""
    ca = str(broker_tls.ca_file)
    plain_port = urllib.parse.urlsplit(amqp_url).port
    return {
        "another CA": (BrokerSettings(broker_tls.url, str(broker_tls.wrong_ca_file)),
                       TLSCause.CERTIFICATE),
        "a name not in the certificate": (BrokerSettings(_with(
            broker_tls.url, "127.0.0.1", query="server_name_indication=rabbit.elsewhere"), ca),
            TLSCause.HOSTNAME),
        "the plain AMQP port": (BrokerSettings(_with(broker_tls.url, port=plain_port), ca),
                                TLSCause.NOT_TLS),
    }


CASES = ["another CA", "a name not in the certificate", "the plain AMQP port"]
WORDS = {TLSCause.CERTIFICATE: "certificate verify failed",
         TLSCause.HOSTNAME: "hostname mismatch", TLSCause.NOT_TLS: "not TLS"}


def _assert_says_why(error: BaseException, settings: BrokerSettings, cause: TLSCause) -> None:
    assert isinstance(error, TLSError) and error.cause is cause, error
    message = str(error)
    assert settings.masked in message, "it names the URL"
    assert _password(settings.url) not in message, "the password stays out"
    assert WORDS[cause] in message


def test_a_round_trip_over_tls_verified_with_the_brokers_ca(tls: BrokerSettings) -> None:
    queue = f"test.tls.{secrets.token_hex(3)}"
    received: list[bytes] = []

    def on_delivery(delivery: Delivery) -> None:
        received.append(delivery.body)
        delivery.ack()

    with Admin(tls) as admin:
        admin.declare_events_queue(queue, ["tls.#"])
        link = Link(tls, name=f"test-tls-{queue}").start()
        try:
            assert link.wait_connected(10)
            link.consume(queue, 10, on_delivery)
            link.publish(names.EVENTS_EXCHANGE, "tls.ping", b'{"v": 1}').result(10)
            eventually(lambda: received == [b'{"v": 1}'], 10, what="the message back")
            if os.environ.get("CONVEYOR_TEST_USE_KUBECONFIG") != "1":
                # The broker's own word that this connection is the TLS one.
                listing = rabbitmq.ctl(paths(), ports(), "list_connections",
                                       "client_properties", "ssl")
                [line] = [x for x in listing.splitlines() if f"test-tls-{queue}" in x]
                assert line.rstrip().rsplit("\t", 1)[1] == "true"
        finally:
            link.close()
            admin.delete_queue(queue)


@pytest.mark.parametrize("case", CASES)
def test_a_misconfiguration_fails_a_blocking_connection_at_once_saying_why(
        misconfigured, case: str) -> None:  # type: ignore[no-untyped-def]
    settings, cause = misconfigured[case]
    started = time.monotonic()
    with pytest.raises(TLSError) as info:
        Admin(settings)
    assert time.monotonic() - started < FAST
    _assert_says_why(info.value, settings, cause)


@pytest.mark.parametrize("case", CASES)
def test_a_misconfiguration_fails_the_link_at_once_and_is_logged_as_an_error(
        misconfigured, case: str, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    settings, cause = misconfigured[case]
    caplog.set_level(logging.INFO, logger="conveyor.broker")
    link = Link(settings, name="test-tls-failing").start()
    try:
        started = time.monotonic()
        with pytest.raises(TLSError) as info:
            link.wait_connected(30)
        assert time.monotonic() - started < FAST, "it does not wait out the timeout"
        _assert_says_why(info.value, settings, cause)
        failure = link.failure
        assert failure is not None
        _assert_says_why(failure, settings, cause)
        [logged] = [r for r in caplog.records
                    if r.name == "conveyor.broker" and r.levelno == logging.ERROR]
        assert settings.masked in logged.getMessage() and cause in logged.getMessage()
        assert not any(_password(settings.url) in r.getMessage() for r in caplog.records)
    finally:
        link.close()


@pytest.fixture
def worker_process(tmp_path: Path) -> Iterator[Callable[[BrokerSettings], subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []

    def start(settings: BrokerSettings) -> subprocess.Popen[str]:
        env = {**os.environ, "CONVEYOR_AMQP_URL": settings.url,
               "CONVEYOR_AMQP_CA_FILE": settings.ca_file or "", "CONVEYOR_QUEUE": "unused",
               "CONVEYOR_METRICS_PORT": "0", "PYTHONPATH": str(HERE)}
        process = subprocess.Popen([str(WORKER), "--module", "tasks_under_test",
                                    "--task-type", "echo"], env=env, cwd=tmp_path,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(10)


@pytest.mark.parametrize("case", CASES)
def test_a_worker_that_cannot_connect_over_tls_exits_2_saying_why(
        misconfigured, worker_process, case: str) -> None:  # type: ignore[no-untyped-def]
    settings, cause = misconfigured[case]
    process = worker_process(settings)
    # The interpreter's start-up and imports come first: a bound, not the handshake's time.
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 2
    [line] = [x for x in stderr.splitlines() if x.startswith("conveyor-worker: ")]
    assert settings.masked in line and WORDS[cause] in line
    assert _password(settings.url) not in stderr


def test_a_ca_file_that_cannot_be_read_fails_before_any_connection(tls: BrokerSettings,
                                                                   tmp_path: Path) -> None:
    absent = BrokerSettings(tls.url, str(tmp_path / "absent.pem"))
    for attempt in (lambda: Admin(absent), lambda: Link(absent)):
        with pytest.raises(TLSError) as info:
            attempt()
        assert info.value.cause is TLSCause.CA_FILE
        assert str(tmp_path / "absent.pem") in str(info.value)
