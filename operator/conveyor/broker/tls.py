"""Why a TLS connection to the broker failed, in words a user can act on (pure).

pika hides the `ssl` error it met at different depths: a BlockingConnection raises it bare, a
SelectConnection hands its open-error callback an `AMQPConnectionWorkflowFailed` whose
`exceptions` hold, per address tried, an `AMQPConnectorTransportSetupError` whose `exception`
is the ssl error. `tls_failure` looks through any such nesting (without importing pika) and
maps what it finds onto a `TLSCause`:

    ssl.SSLCertVerificationError, hostname or IP mismatch     HOSTNAME
    ssl.SSLCertVerificationError, any other verify code       CERTIFICATE
    ssl.SSLError WRONG_VERSION_NUMBER and kin                 NOT_TLS   (the peer spoke
                                                              something else, e.g. AMQP)
    ssl.SSLEOFError during the handshake                      NOT_TLS   (it hung up instead)
    any other ssl.SSLError                                    HANDSHAKE
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator

from conveyor.broker.errors import TLSCause, TLSError
from conveyor.broker.settings import SERVER_NAME_PARAM, BrokerSettings

# OpenSSL's verify codes for a certificate that is fine but names another host or IP.
_NAME_MISMATCH = {62, 64}  # X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH
# OpenSSL's reasons when the bytes that came back are no TLS record at all.
_NOT_TLS_REASONS = {"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "UNKNOWN_PROTOCOL",
                    "PACKET_LENGTH_TOO_LONG", "HTTP_REQUEST", "HTTPS_PROXY_REQUEST"}
_MAX_DEPTH = 8


def _nested(error: BaseException, depth: int = 0) -> Iterator[BaseException]:
    """`error` and every exception inside it: causes, contexts, args, and pika's holders."""
    if depth > _MAX_DEPTH:
        return
    yield error
    inner: list[object] = [error.__cause__, error.__context__,
                           getattr(error, "exception", None),
                           *(getattr(error, "exceptions", None) or ()), *error.args]
    for item in inner:
        if isinstance(item, BaseException) and item is not error:
            yield from _nested(item, depth + 1)


def _ssl_error(error: BaseException) -> ssl.SSLError | None:
    """The ssl error inside `error`; a certificate verdict wins over a lesser one (pika
    tries every address of a host, and only one of them may have reached the broker)."""
    found = [e for e in _nested(error) if isinstance(e, ssl.SSLError)]
    verdicts = [e for e in found if isinstance(e, ssl.SSLCertVerificationError)]
    return (verdicts or found or [None])[0]


def _ca(settings: BrokerSettings) -> str:
    return f"the CA file {settings.ca_file}" if settings.ca_file else "the system's CAs"


def describe(error: ssl.SSLError, settings: BrokerSettings) -> tuple[TLSCause, str]:
    """The cause of an ssl error and a sentence that says it, naming what to check."""
    where = f"{settings.host}:{settings.port}"
    # OpenSSL sets these on the errors it raises; one made in Python may lack them.
    reason = getattr(error, "reason", None)
    if isinstance(error, ssl.SSLCertVerificationError):
        detail = str(getattr(error, "verify_message", None) or reason or error)
        if getattr(error, "verify_code", None) in _NAME_MISMATCH:
            named = (f" (the URL's {SERVER_NAME_PARAM})"
                     if settings.server_name != settings.host else " (the URL's host)")
            return TLSCause.HOSTNAME, (
                f"TLS hostname mismatch: the broker's certificate is not valid for "
                f"{settings.server_name!r}{named}")
        return TLSCause.CERTIFICATE, (
            f"TLS certificate verify failed: {detail}; the broker's certificate is not "
            f"trusted by {_ca(settings)}")
    if isinstance(error, ssl.SSLEOFError):
        return TLSCause.NOT_TLS, (
            f"not TLS: {where} closed the connection during the TLS handshake; is it the "
            f"broker's TLS port?")
    if reason in _NOT_TLS_REASONS:
        return TLSCause.NOT_TLS, (
            f"not TLS: {where} answered without TLS ({reason}); a plain AMQP port "
            f"needs amqp://, amqps:// needs the broker's TLS port (5671 by default)")
    return TLSCause.HANDSHAKE, f"TLS handshake failed: {reason or error}"


def tls_failure(error: BaseException, settings: BrokerSettings) -> TLSError | None:
    """A TLSError for a connection failure caused by TLS, or None when TLS was not why."""
    found = _ssl_error(error)
    if found is None:
        return None
    cause, sentence = describe(found, settings)
    return TLSError(f"cannot connect to RabbitMQ at {settings.masked}: {sentence}", cause)
