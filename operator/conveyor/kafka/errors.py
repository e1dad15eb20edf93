"""What can go wrong with Kafka: one branch of Conveyor's error tree.

    ConveyorError
     ├── KafkaSettingsError     the Kafka settings cannot be used; names the variable
     ├── KafkaUnavailableError  Kafka settings are given but the client is not installed
     │                          (`pip install 'conveyor[kafka]'`)
     └── KafkaError             a Kafka operation failed; librdkafka's error is the cause;
                                `retryable` says whether trying again can help

Messages never carry a password: they are built from librdkafka's error name and text, the
topic and the partition only.
"""

from __future__ import annotations

from conveyor.errors import ConveyorError

EXTRA = "conveyor[kafka]"


class KafkaSettingsError(ConveyorError):
    """The Kafka settings cannot be used; the message names the variable."""


class KafkaUnavailableError(ConveyorError):
    """Kafka is configured, but the Kafka client library (the `kafka` extra) is missing."""

    def __init__(self, variable: str) -> None:
        super().__init__(f"{variable} is set but the Kafka client is not installed: install "
                         f"Conveyor with its Kafka extra, pip install '{EXTRA}'")


class KafkaError(ConveyorError):
    """A Kafka operation failed (produce, commit, subscribe); the client's error is the
    cause."""

    def __init__(self, message: str, *, code: str = "", retryable: bool = True) -> None:
        super().__init__(message)
        self.code = code
        self.retryable = retryable
        """Whether trying again can help (a broker restarting, a connection lost, a
        rebalance), as opposed to a configuration to fix first (credentials, a topic
        denied)."""


# librdkafka's error names (`KafkaError.name()`) that no retry mends: credentials, rights,
# a topic that cannot exist, a message the broker will never take.
PERMANENT_CODES = frozenset({
    "_AUTHENTICATION", "SASL_AUTHENTICATION_FAILED", "TOPIC_AUTHORIZATION_FAILED",
    "GROUP_AUTHORIZATION_FAILED", "CLUSTER_AUTHORIZATION_FAILED", "_SSL",
    "INVALID_TOPIC_EXCEPTION", "MSG_SIZE_TOO_LARGE", "_MSG_SIZE_TOO_LARGE",
    "RECORD_LIST_TOO_LARGE", "_INVALID_ARG", "_UNKNOWN_TOPIC", "UNKNOWN_TOPIC_OR_PART",
    "_FATAL", "UNSUPPORTED_VERSION", "_UNSUPPORTED_FEATURE",
})


def for_code(code: str, text: str, *, what: str, fatal: bool = False,
             retriable: bool | None = None) -> KafkaError:
    """Our error for one of librdkafka's: retryable unless it is fatal, the client said it
    is not, or its code is one no retry mends."""
    retryable = not fatal and code not in PERMANENT_CODES
    if retriable is True and not fatal:
        retryable = True
    return KafkaError(f"{what}: {code}: {text}", code=code, retryable=retryable)
