"""The operator's settings: flags first, then environment variables, then defaults."""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from conveyor import kafka
from conveyor.broker.settings import CA_FILE_ENV, URL_ENV, BrokerSettings
from conveyor.errors import ConveyorError
from conveyor.kafka import KafkaSettings, KafkaSettingsError, KafkaUnavailableError
from conveyor.kafka.settings import BOOTSTRAP_ENV
from conveyor.store.errors import StoreSettingsError
from conveyor.store.loading import DEFAULT_MAX_OBJECT_BYTES, MAX_OBJECT_ENV
from conveyor.store.settings import BUCKET_ENV, StoreSettings

WORKER_SECRET_ENV = "CONVEYOR_S3_WORKER_SECRET"
CACHE_BYTES_ENV = "CONVEYOR_S3_CACHE_BYTES"
DEFAULT_CACHE_BYTES = 64 * 1024 * 1024
WORKER_ACCESS_KEY = "accessKey"
WORKER_SECRET_KEY = "secretKey"
"""The keys of the worker Secret (`CONVEYOR_S3_WORKER_SECRET`): the store credentials the
admin made for workers."""
KAFKA_GROUP_ENV = "CONVEYOR_KAFKA_GROUP_ID"
KAFKA_TOPIC_ENV = "CONVEYOR_KAFKA_RUN_EVENTS_TOPIC"
KAFKA_RESET_ENV = "CONVEYOR_KAFKA_AUTO_OFFSET_RESET"
KAFKA_IN_FLIGHT_ENV = "CONVEYOR_KAFKA_MAX_IN_FLIGHT"
_KAFKA_TOPIC = re.compile(r"^[a-zA-Z0-9._-]{1,249}$")
_KAFKA_GROUP = re.compile(r"^[a-zA-Z0-9._-]{1,255}$")
_SECRET_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")  # a DNS-1123 subdomain


class SettingsError(ConveyorError):
    """A flag or environment variable of the operator has a value it cannot use."""


@dataclass(frozen=True)
class Settings:
    """Everything the operator is configured with; see `load` for where each comes from."""

    broker: BrokerSettings
    """The RabbitMQ broker (`--amqp-url`, `CONVEYOR_AMQP_URL`) and the CA that verifies it
    (`--amqp-ca-file`, `CONVEYOR_AMQP_CA_FILE`); the password is never logged."""
    namespaces: tuple[str, ...] = ()
    """Namespaces to watch; empty: the whole cluster."""
    writes_per_second: float = 200.0
    """Bound on status writes per second over all runs (`CONVEYOR_WRITES_PER_SECOND`): a
    small run needs one, so this bounds runs finished per second too."""
    events_per_second: float = 25.0
    """Bound on Kubernetes Events posted per second (`CONVEYOR_EVENTS_PER_SECOND`), a budget
    of their own: past it Events wait, and past a thousand waiting the oldest are dropped."""
    event_hold: float = 1.0
    """Seconds an Event waits before it is posted, replaced meanwhile by a newer one about
    the same run or task: a run that ends sooner posts only its end."""
    status_interval: float = 0.25
    """Least seconds between two status writes of one run: writes coalesce within it."""
    first_status_delay: float = 1.0
    """Seconds from a run's first sight to its first status write: a run that ends sooner
    is written once (its end), which at many small runs halves their status writes."""
    health_address: str = "0.0.0.0"
    health_port: int = 8080
    """Port of `/healthz` and `/metrics`; 0 turns the server off."""
    log_level: str = "INFO"
    leader_lease: str | None = "conveyor-operator"
    """Name of the Lease that elects the one replica that acts; None: no election."""
    lease_namespace: str = "default"
    """Namespace of that Lease: the operator's own (`POD_NAMESPACE`)."""
    lease_seconds: float = 120.0
    """An attempt in flight with no sign for this long is checked for a lost message and
    dispatched again (`CONVEYOR_LEASE_SECONDS`); keep it above a few worker heartbeat
    intervals (`CONVEYOR_HEARTBEAT_SECONDS` of the workers, 30 by default)."""
    own_deployment: str | None = None
    """The operator's own Deployment (`CONVEYOR_OPERATOR_DEPLOYMENT`), in `lease_namespace`:
    when it is gone as the operator stops, the install was removed and its queues go too."""
    pool_interval: float = 2.0
    """Seconds between two looks at every pool's backlog for autoscaling and status."""
    store: StoreSettings | None = None
    """The object store for values kept by reference (`CONVEYOR_S3_*`); None when
    `CONVEYOR_S3_BUCKET` is unset: outputs then travel inline only."""
    store_worker_secret: str | None = None
    """A Secret in `lease_namespace` (`CONVEYOR_S3_WORKER_SECRET`) with keys `accessKey` and
    `secretKey`: the store credentials the workers get instead of the operator's own."""
    store_cache_bytes: int = DEFAULT_CACHE_BYTES
    """Stored values the operator holds read for expressions, at most (as their JSON counts;
    the Python objects take several times that): `CONVEYOR_S3_CACHE_BYTES`."""
    store_max_object_bytes: int = DEFAULT_MAX_OBJECT_BYTES
    """The largest value kept in the store (`CONVEYOR_S3_MAX_OBJECT_BYTES`), the workers'
    limit too."""
    kafka: KafkaSettings | None = None
    """The Kafka cluster of Kafka triggers and the run events' topic
    (`CONVEYOR_KAFKA_BOOTSTRAP_SERVERS` and the rest of `conveyor.kafka.settings`); None:
    Kafka is off, and Kafka triggers start nothing."""
    kafka_group_id: str | None = None
    """The consumer group of Kafka triggers (`CONVEYOR_KAFKA_GROUP_ID`); default
    `conveyor.<instance>`, one per install."""
    kafka_run_events_topic: str | None = None
    """The topic every `run.<phase>` event is forwarded to (`CONVEYOR_KAFKA_RUN_EVENTS_TOPIC`);
    None: none is."""
    kafka_auto_offset_reset: str = "earliest"
    """Where the group starts on a partition it has no offset for
    (`CONVEYOR_KAFKA_AUTO_OFFSET_RESET`): `earliest` (every record a trigger could see starts
    its run) or `latest` (only records written from then on)."""
    kafka_max_in_flight: int = 1000
    """Records being turned into runs at once, at most (`CONVEYOR_KAFKA_MAX_IN_FLIGHT`)."""
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def instance(self) -> str:
        """This install's name among others on the same broker: its Lease's namespace and
        name, which its replicas share and other installs do not."""
        return f"{self.lease_namespace}.{self.leader_lease or 'conveyor-operator'}"

    @property
    def kafka_group(self) -> str:
        return self.kafka_group_id or f"conveyor.{self.instance}"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="conveyor-operator",
        description="Runs Conveyor Workflows: provisions worker pools, dispatches tasks, "
                    "records progress in WorkflowRun status.",
    )
    parser.add_argument("--namespace", "-n", action="append", default=None,
                        help="namespace to watch (repeatable; env CONVEYOR_NAMESPACES, "
                             "comma-separated); default: all namespaces")
    parser.add_argument("--amqp-url", default=None,
                        help="RabbitMQ URL (env CONVEYOR_AMQP_URL; prefer the env, from a Secret)")
    parser.add_argument("--amqp-ca-file", default=None,
                        help="CA bundle (PEM) that verifies the broker for amqps (env "
                             "CONVEYOR_AMQP_CA_FILE; default the system's CAs); the workers "
                             "get a copy through their Workflow's broker Secret")
    parser.add_argument("--writes-per-second", type=float, default=None,
                        help="bound on status writes per second (env "
                             "CONVEYOR_WRITES_PER_SECOND, default 200)")
    parser.add_argument("--health-port", type=int, default=None,
                        help="port of /healthz and /metrics (env CONVEYOR_HEALTH_PORT, "
                             "default 8080; 0: off)")
    parser.add_argument("--health-address", default=None,
                        help="address /healthz and /metrics listen on (env "
                             "CONVEYOR_HEALTH_ADDRESS, default 0.0.0.0)")
    parser.add_argument("--log-level", default=None,
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="log level (env CONVEYOR_LOG_LEVEL, default INFO)")
    parser.add_argument("--leader-lease", default=None,
                        help="Lease that elects the acting replica (env CONVEYOR_LEADER_LEASE, "
                             "default conveyor-operator; 'none': no election, for one replica)")
    return parser


def _number(raw: str, name: str, kind: type[float] | type[int]) -> float:
    try:
        value = kind(raw)
    except ValueError:
        raise SettingsError(f"{name}: {raw!r} is not a number") from None
    if value < 0:
        raise SettingsError(f"{name}: {raw!r} must not be negative")
    return value


def _store(env: Mapping[str, str]) -> tuple[StoreSettings | None, str | None, int]:
    """The object store's settings, the worker Secret's name and the object size limit."""
    worker_secret = env.get(WORKER_SECRET_ENV) or None
    limit = int(_number(env.get(MAX_OBJECT_ENV) or str(DEFAULT_MAX_OBJECT_BYTES),
                        MAX_OBJECT_ENV, int))
    if limit < 1:
        raise SettingsError(f"{MAX_OBJECT_ENV}: must be at least 1 byte")
    if not env.get(BUCKET_ENV):
        if worker_secret is not None:
            raise SettingsError(f"{WORKER_SECRET_ENV} is set but {BUCKET_ENV} is not: there "
                                "is no object store for the workers' credentials")
        return None, None, limit
    try:
        store = StoreSettings.from_env(env)
    except StoreSettingsError as error:
        # Its message names the variable; the secret key is never in it.
        raise SettingsError(f"object store: {error}") from None
    if worker_secret is not None and not _SECRET_NAME.match(worker_secret):
        raise SettingsError(f"{WORKER_SECRET_ENV}: {worker_secret!r} is not a Secret name")
    return store, worker_secret, limit


def _kafka(env: Mapping[str, str]) -> dict[str, Any]:
    """The Kafka fields of Settings, checked: unset bootstrap servers turn Kafka off."""
    try:
        settings = KafkaSettings.from_env(env)
    except KafkaSettingsError as error:
        raise SettingsError(f"kafka: {error}") from None  # names the variable, not the secret
    group = env.get(KAFKA_GROUP_ENV) or None
    topic = env.get(KAFKA_TOPIC_ENV) or None
    reset = (env.get(KAFKA_RESET_ENV) or "earliest").strip().lower()
    in_flight = int(_number(env.get(KAFKA_IN_FLIGHT_ENV) or "1000", KAFKA_IN_FLIGHT_ENV, int))
    if settings is None:
        if topic or group:
            raise SettingsError(f"{KAFKA_TOPIC_ENV if topic else KAFKA_GROUP_ENV} is set but "
                                f"{BOOTSTRAP_ENV} is not: there is no Kafka to use")
        return {}
    if not kafka.installed():
        raise SettingsError(str(KafkaUnavailableError(BOOTSTRAP_ENV)))
    if topic is not None and not _KAFKA_TOPIC.match(topic):
        raise SettingsError(f"{KAFKA_TOPIC_ENV}: {topic!r} is not a Kafka topic name")
    if group is not None and not _KAFKA_GROUP.match(group):
        raise SettingsError(f"{KAFKA_GROUP_ENV}: {group!r} is not a consumer group name")
    if reset not in ("earliest", "latest"):
        raise SettingsError(f"{KAFKA_RESET_ENV}: {reset!r} is neither earliest nor latest")
    if in_flight < 1:
        raise SettingsError(f"{KAFKA_IN_FLIGHT_ENV}: must be at least 1")
    return {"kafka": settings, "kafka_group_id": group, "kafka_run_events_topic": topic,
            "kafka_auto_offset_reset": reset, "kafka_max_in_flight": in_flight}


def shared_credentials_warning(settings: Settings) -> str | None:
    """What to log once at start when the workers get the operator's own store keys: any
    worker's code could then read and delete every run's objects, of every namespace."""
    if settings.store is None or settings.store_worker_secret is not None:
        return None
    where = f"s3://{settings.store.bucket}/{settings.store.prefix}"
    return (f"Workers share the operator's object store credentials: set "
            f"{WORKER_SECRET_ENV} (chart: store.workerSecret) to a Secret in namespace "
            f"{settings.lease_namespace} with keys {WORKER_ACCESS_KEY} and "
            f"{WORKER_SECRET_KEY} of a store user allowed only objects under "
            f"{where} (docs/operating.md, \"Object store\")")


def load(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    args = _parser().parse_args(argv)
    url = args.amqp_url or env.get(URL_ENV, "")
    ca_file = args.amqp_ca_file or env.get(CA_FILE_ENV, "")
    broker = BrokerSettings.from_env({**env, URL_ENV: url, CA_FILE_ENV: ca_file},
                                     name="conveyor-operator")
    namespaces = args.namespace or [
        n.strip() for n in env.get("CONVEYOR_NAMESPACES", "").split(",") if n.strip()
    ]
    writes = args.writes_per_second
    if writes is None:
        writes = _number(env.get("CONVEYOR_WRITES_PER_SECOND", "200"),
                         "CONVEYOR_WRITES_PER_SECOND", float)
    if writes <= 0:
        raise SettingsError("--writes-per-second must be positive")
    events = _number(env.get("CONVEYOR_EVENTS_PER_SECOND", "25"), "CONVEYOR_EVENTS_PER_SECOND",
                     float)
    if events <= 0:
        raise SettingsError("CONVEYOR_EVENTS_PER_SECOND: must be positive")
    port = args.health_port
    if port is None:
        port = int(_number(env.get("CONVEYOR_HEALTH_PORT", "8080"), "CONVEYOR_HEALTH_PORT", int))
    lease = args.leader_lease or env.get("CONVEYOR_LEADER_LEASE", "conveyor-operator")
    lease_seconds = _number(env.get("CONVEYOR_LEASE_SECONDS", "120"), "CONVEYOR_LEASE_SECONDS",
                            float)
    if lease_seconds < 1:
        raise SettingsError(f"CONVEYOR_LEASE_SECONDS: {lease_seconds:g} is below 1 second")
    store, worker_secret, max_object = _store(env)
    cache_bytes = int(_number(env.get(CACHE_BYTES_ENV) or str(DEFAULT_CACHE_BYTES),
                              CACHE_BYTES_ENV, int))
    if cache_bytes < 0:
        raise SettingsError(f"{CACHE_BYTES_ENV}: must not be negative")
    return Settings(
        broker=broker,
        namespaces=tuple(namespaces),
        writes_per_second=float(writes),
        events_per_second=float(events),
        health_address=args.health_address or env.get("CONVEYOR_HEALTH_ADDRESS", "0.0.0.0"),
        health_port=int(port),
        log_level=(args.log_level or env.get("CONVEYOR_LOG_LEVEL", "INFO")).upper(),
        leader_lease=None if lease.lower() == "none" else lease,
        lease_namespace=env.get("POD_NAMESPACE") or (namespaces[0] if namespaces else "default"),
        own_deployment=env.get("CONVEYOR_OPERATOR_DEPLOYMENT") or None,
        lease_seconds=float(lease_seconds),
        store=store,
        store_worker_secret=worker_secret,
        store_max_object_bytes=max_object,
        store_cache_bytes=cache_bytes,
        **_kafka(env),
    )


def in_cluster_server(env: Mapping[str, str]) -> str | None:
    """The API server's URL in a pod, as client-go's InClusterConfig finds it: the address of
    the `kubernetes` Service from the variables the kubelet sets. kopf's own ServiceAccount
    login names `kubernetes.default.svc`, which only a cluster DNS resolves: a cluster without
    one (or a pod whose resolver cannot reach it) would leave the operator unable to watch.
    None outside a pod."""
    host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        return None
    return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
