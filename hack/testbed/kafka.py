"""The test bed's Kafka broker: one KRaft node (broker and controller in one process), from
Maven Central's `org.apache.kafka` jars (hack/build-kafka.sh, cached), run with the Java on
this machine, on 127.0.0.1 only.

It listens for clients in plain text (`Ports.kafka`, the bootstrap server `testbed env`
prints as CONVEYOR_KAFKA_BOOTSTRAP_SERVERS) and with TLS (`Ports.kafka_tls`, a certificate
for localhost and 127.0.0.1 signed by the CA of the test bed's services, `Paths.amqp_ca`),
and for its own quorum on `Ports.kafka_controller`. Its storage is formatted once, with a
cluster id kept in the state directory; the records stay across a restart (`restart
kafka`). Topics are created when first produced to, with 3 partitions, so tests see
records of one topic spread over partitions.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import uuid
from pathlib import Path

from . import pki, procs
from .layout import REPO, Paths, Ports

NAME = "kafka"
PARTITIONS = 3
HEAP = "-Xmx512m"


def home() -> Path:
    """The cached broker (built first on a cold cache: a Maven download, under a minute)."""
    out = subprocess.run(["bash", str(REPO / "hack" / "build-kafka.sh")], check=True,
                         stdout=subprocess.PIPE, text=True)
    return Path(out.stdout.strip().splitlines()[-1])


def installed() -> bool:
    return shutil.which("java") is not None


def bootstrap(ports: Ports) -> str:
    return f"127.0.0.1:{ports.kafka}"


def tls_bootstrap(ports: Ports) -> str:
    """The TLS listener, by the name its certificate carries."""
    return f"localhost:{ports.kafka_tls}"


def env_vars(ports: Ports) -> dict[str, str]:
    """What `testbed env` exports: the bootstrap server under the name conveyor.kafka reads,
    and the TLS one under a name of the test bed's own."""
    return {"CONVEYOR_KAFKA_BOOTSTRAP_SERVERS": bootstrap(ports),
            "CONVEYOR_KAFKA_TLS_BOOTSTRAP_SERVERS": tls_bootstrap(ports)}


def _properties(paths: Paths, ports: Ports) -> str:
    store = paths.pki / "kafka-keystore.pem"
    return "\n".join([
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.bootstrap.servers=127.0.0.1:{ports.kafka_controller}",
        f"listeners=PLAINTEXT://127.0.0.1:{ports.kafka},"
        f"CONTROLLER://127.0.0.1:{ports.kafka_controller},SSL://127.0.0.1:{ports.kafka_tls},"
        f"PODS://127.0.0.1:{ports.kafka_pods}",
        # PODS: the container node's pods, through the bridge at the node IP (netns.NODE_IP).
        f"advertised.listeners=PLAINTEXT://127.0.0.1:{ports.kafka},"
        f"SSL://localhost:{ports.kafka_tls},PODS://10.254.0.1:{ports.kafka_pods}",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=PLAINTEXT",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SSL:SSL,"
        "PODS:PLAINTEXT",
        "ssl.keystore.type=PEM",
        f"ssl.keystore.location={store}",
        f"log.dirs={paths.kafka / 'data'}",
        f"num.partitions={PARTITIONS}",
        "auto.create.topics.enable=true",
        "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=3",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1",
        "group.initial.rebalance.delay.ms=0",
        "",
    ])


_LOG4J = """log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.org.apache.kafka=WARN
log4j.logger.kafka=WARN
log4j.logger.kafka.server.KafkaRaftServer=INFO
log4j.logger.org.apache.kafka.common.utils.AppInfoParser=INFO
"""


def _java(paths: Paths, main: str, *args: str) -> list[str]:
    libs = home() / "libs"
    return ["java", HEAP, "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
            f"-Dlog4j.configuration=file:{paths.kafka / 'log4j.properties'}",
            "-Djava.awt.headless=true", "-cp", f"{libs}/*", main, *args]


def _cluster_id(paths: Paths) -> str:
    kept = paths.kafka / "cluster-id"
    if not kept.exists():
        kept.write_text(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))
    return kept.read_text().strip()


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "JAVA_TOOL"))}
    return env


def start(paths: Paths, ports: Ports) -> None:
    pki.ensure_kafka(paths.pki)
    paths.kafka.mkdir(parents=True, exist_ok=True)
    config = paths.kafka / "server.properties"
    config.write_text(_properties(paths, ports))
    (paths.kafka / "log4j.properties").write_text(_LOG4J)
    if not (paths.kafka / "data" / "meta.properties").exists():
        with open(paths.logs / f"{NAME}-format.log", "ab") as log:
            subprocess.run(_java(paths, "kafka.tools.StorageTool", "format", "--standalone",
                                 "-t", _cluster_id(paths), "-c", str(config)),
                           check=True, stdout=log, stderr=subprocess.STDOUT, env=_env(),
                           timeout=120)
    procs.start(NAME, _java(paths, "kafka.Kafka", str(config)), pids=paths.pids,
                logs=paths.logs, state=paths.root, env=_env())


def serving(paths: Paths, ports: Ports) -> bool:
    """Whether the broker answers a metadata request with itself in it."""
    if procs.running_pid(paths.pids, NAME) is None:
        raise RuntimeError(f"Kafka exited; see {paths.logs / (NAME + '.log')}")
    from confluent_kafka.admin import AdminClient  # noqa: PLC0415 - the kafka extra

    # Quiet: librdkafka would print every refused connection of a broker still starting.
    admin = AdminClient({"bootstrap.servers": bootstrap(ports), "socket.timeout.ms": 2000,
                         "log_level": 0})
    metadata = admin.list_topics(timeout=3)
    return bool(metadata.brokers)


def wait(paths: Paths, ports: Ports, timeout: float = 90) -> None:
    procs.wait_until(lambda: serving(paths, ports), timeout, "Kafka", interval=0.3)


def stop(paths: Paths) -> None:
    procs.stop(paths.pids, NAME, grace=20)
