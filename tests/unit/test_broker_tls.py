"""Why a TLS connection failed, mapped onto TLSError: from real OpenSSL verdicts (a handshake in
memory, no socket) and from the nesting pika wraps them in; the CA file checked before use."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from pika.adapters.utils.connection_workflow import (
    AMQPConnectionWorkflowFailed,
    AMQPConnectorSocketConnectError,
    AMQPConnectorTransportSetupError,
)

from conveyor.broker import BrokerSettings, TLSCause, TLSError, ca_bundle
from conveyor.broker.connection import connect_failure, connection_parameters
from conveyor.broker.settings import BrokerSettingsError
from conveyor.broker.tls import tls_failure
from testbed import pki

PASSWORD = "s3cret"
AMQP_HEADER = b"AMQP\x00\x00\x09\x01"  # what a plain AMQP port answers to a TLS ClientHello


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the broker's pki directory: CA, certificate for localhost/127.0.0.1, key; another
    CA that did not sign it)."""
    broker, other = tmp_path_factory.mktemp("broker"), tmp_path_factory.mktemp("other")
    pki.ensure_broker(broker)
    pki.ensure_broker(other)
    return broker, other / "amqp-ca.crt"


def _server(pki_dir: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki_dir / "rabbitmq.crt", pki_dir / "rabbitmq.key")
    return context


def _handshake(client: ssl.SSLContext, server: ssl.SSLContext | None, name: str,
               answer: bytes = b"") -> ssl.SSLError | None:
    """A TLS handshake between two contexts through memory; the client's error, if any.
    With no server, `answer` is what comes back to the ClientHello (then end of stream)."""
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    tls_client = client.wrap_bio(c_in, c_out, server_hostname=name)
    tls_server = server.wrap_bio(s_in, s_out, server_side=True) if server else None
    try:
        for _ in range(10):
            for side in (tls_client, tls_server):
                try:
                    if side is not None:
                        side.do_handshake()
                except ssl.SSLWantReadError:
                    pass
                except ssl.SSLError:
                    if side is tls_client:
                        raise
            if tls_server is None:
                c_in.write(answer)
                c_in.write_eof()
            else:
                s_in.write(c_out.read())
                c_in.write(s_out.read())
    except ssl.SSLError as error:
        return error
    return None


def _client(settings: BrokerSettings) -> ssl.SSLContext:
    ssl_options = connection_parameters(settings).ssl_options
    assert ssl_options is not None
    context: ssl.SSLContext = ssl_options.context
    return context


def _settings(ca: Path, url: str = "amqps://u:s3cret@localhost:5671/") -> BrokerSettings:
    return BrokerSettings(url, str(ca))


def test_the_right_ca_and_name_pass(certs: tuple[Path, Path]) -> None:
    broker, _ = certs
    settings = _settings(broker / "amqp-ca.crt")
    assert _handshake(_client(settings), _server(broker), settings.server_name) is None


def test_a_ca_that_did_not_sign_the_certificate_is_certificate_verify_failed(
        certs: tuple[Path, Path]) -> None:
    broker, other_ca = certs
    settings = _settings(other_ca)
    error = _handshake(_client(settings), _server(broker), settings.server_name)
    assert error is not None
    failure = tls_failure(error, settings)
    assert failure is not None and failure.cause is TLSCause.CERTIFICATE
    assert "TLS certificate verify failed" in str(failure)
    assert f"the CA file {other_ca}" in str(failure), "it names the CA it tried"


@pytest.mark.parametrize("url", [
    "amqps://u:s3cret@127.0.0.1:5671/?server_name_indication=rabbit.elsewhere",
    "amqps://u:s3cret@127.0.0.2:5671/",  # an IP the certificate does not carry
])
def test_a_name_the_certificate_does_not_carry_is_a_hostname_mismatch(
        certs: tuple[Path, Path], url: str) -> None:
    broker, _ = certs
    settings = _settings(broker / "amqp-ca.crt", url)
    error = _handshake(_client(settings), _server(broker), settings.server_name)
    assert error is not None
    failure = tls_failure(error, settings)
    assert failure is not None and failure.cause is TLSCause.HOSTNAME
    assert f"not valid for {settings.server_name!r}" in str(failure)


def test_a_plain_amqp_port_is_not_tls(certs: tuple[Path, Path]) -> None:
    broker, _ = certs
    settings = _settings(broker / "amqp-ca.crt", "amqps://u:s3cret@localhost:5672/")
    error = _handshake(_client(settings), None, "localhost", answer=AMQP_HEADER)
    assert error is not None
    failure = tls_failure(error, settings)
    assert failure is not None and failure.cause is TLSCause.NOT_TLS
    assert "not TLS: localhost:5672 answered without TLS" in str(failure)


def test_a_port_that_hangs_up_on_the_handshake_is_not_tls(certs: tuple[Path, Path]) -> None:
    broker, _ = certs
    settings = _settings(broker / "amqp-ca.crt")
    error = _handshake(_client(settings), None, "localhost")
    assert isinstance(error, ssl.SSLEOFError)
    failure = tls_failure(error, settings)
    assert failure is not None and failure.cause is TLSCause.NOT_TLS


def test_other_handshake_failures_keep_openssls_reason() -> None:
    error = ssl.SSLError(1, "[SSL: TLSV1_ALERT_PROTOCOL_VERSION] tlsv1 alert protocol version")
    error.reason = "TLSV1_ALERT_PROTOCOL_VERSION"
    failure = tls_failure(error, BrokerSettings("amqps://h/"))
    assert failure is not None and failure.cause is TLSCause.HANDSHAKE
    assert "TLSV1_ALERT_PROTOCOL_VERSION" in str(failure)


def test_the_ssl_error_is_found_inside_pikas_wrappers_and_wins_over_a_refused_address(
        certs: tuple[Path, Path]) -> None:
    """A SelectConnection's open error: one entry per address of the host (localhost is
    ::1 and 127.0.0.1), here one refused and one that reached a broker with another CA."""
    broker, other_ca = certs
    settings = _settings(other_ca)
    verdict = _handshake(_client(settings), _server(broker), "localhost")
    assert verdict is not None
    refused = AMQPConnectorSocketConnectError(ConnectionRefusedError(111, "refused"))
    wrapped = AMQPConnectionWorkflowFailed([AMQPConnectorTransportSetupError(verdict), refused])
    failure = connect_failure(wrapped, settings)
    assert isinstance(failure, TLSError) and failure.cause is TLSCause.CERTIFICATE


def test_a_failure_without_tls_in_it_stays_a_plain_broker_error() -> None:
    settings = BrokerSettings("amqps://u:s3cret@localhost:1/")
    refused = AMQPConnectionWorkflowFailed(
        [AMQPConnectorSocketConnectError(ConnectionRefusedError(111, "refused"))])
    assert tls_failure(refused, settings) is None
    failure = connect_failure(refused, settings)
    assert not isinstance(failure, TLSError)
    assert str(failure).startswith("cannot connect to RabbitMQ at amqps://u:***@localhost:1/")


def test_every_message_names_the_url_with_the_password_masked(certs: tuple[Path, Path]) -> None:
    broker, other_ca = certs
    settings = _settings(other_ca)
    error = _handshake(_client(settings), _server(broker), "localhost")
    assert error is not None
    message = str(tls_failure(error, settings))
    assert "amqps://u:***@localhost:5671/" in message and PASSWORD not in message


# -- the CA file ------------------------------------------------------------------------------


def test_amqps_verifies_the_name_and_the_ca_file_only(certs: tuple[Path, Path]) -> None:
    broker, _ = certs
    settings = _settings(broker / "amqp-ca.crt",
                         "amqps://u:p@127.0.0.1/?server_name_indication=rabbit&heartbeat=5")
    params = connection_parameters(settings)
    assert params.ssl_options is not None
    assert params.ssl_options.server_hostname == "rabbit"
    context = params.ssl_options.context
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
    subjects = [dict(entry[0] for entry in ca["subject"])["commonName"]
                for ca in context.get_ca_certs()]
    assert subjects == ["conveyor-testbed-amqp-ca"], "the CA file, not the system's CAs too"
    assert params.heartbeat == 5


def test_plain_amqp_has_no_tls_and_ignores_a_ca_file(tmp_path: Path) -> None:
    settings = BrokerSettings("amqp://h/", str(tmp_path / "absent.pem"))
    assert connection_parameters(settings).ssl_options is None
    assert ca_bundle(settings) is None


@pytest.mark.parametrize(("content", "reason"), [
    (None, "No such file or directory"),
    (b"", "empty"),
    (b"   \n", "empty"),
    (b"not a certificate\n", ""),
    (b"\x30\x82\x01\x0a\xff\xfe", ""),  # DER (binary), not PEM
])
def test_a_ca_file_that_cannot_be_used_is_a_tls_error_naming_it(
        tmp_path: Path, content: bytes | None, reason: str) -> None:
    path = tmp_path / "ca.pem"
    if content is not None:
        path.write_bytes(content)
    settings = BrokerSettings("amqps://u:s3cret@h/", str(path))
    for attempt in (lambda: ca_bundle(settings), lambda: connection_parameters(settings)):
        with pytest.raises(TLSError) as info:
            attempt()
        assert info.value.cause is TLSCause.CA_FILE
        assert f"cannot use the CA file {path}" in str(info.value)
        assert reason in str(info.value)
        assert PASSWORD not in str(info.value)


def test_the_ca_bundle_is_the_files_text(certs: tuple[Path, Path]) -> None:
    broker, _ = certs
    ca = broker / "amqp-ca.crt"
    assert ca_bundle(BrokerSettings("amqps://h/", str(ca))) == ca.read_text()


def test_a_query_parameter_pika_does_not_know_is_a_settings_error() -> None:
    with pytest.raises(BrokerSettingsError, match=r"amqps://u:\*\*\*@h/") as info:
        connection_parameters(BrokerSettings("amqps://u:s3cret@h/?hartbeat=5"))
    assert PASSWORD not in str(info.value)
