"""RabbitMQ from Debian's package, as this test bed's own node on loopback.

The node has its own epmd port, Erlang cookie, data directory and AMQP port, so it never meets
another RabbitMQ on the machine, and `down` leaves nothing of it running. Beside the plain
listener it listens with TLS (`amqps`, 127.0.0.1 only) with a certificate for localhost and
127.0.0.1 signed by a CA of the test bed's own (`pki.ensure_broker`); clients need no
certificate of their own.
"""

from __future__ import annotations

import os
import secrets
import shutil
import ssl
import subprocess
import urllib.parse
from pathlib import Path

import pika

from . import pki, procs
from .layout import Paths, Ports

SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
CTL = Path("/usr/lib/rabbitmq/bin/rabbitmqctl")
USER = "conveyor"


def installed() -> bool:
    return SERVER.exists() and shutil.which("epmd") is not None


def _node(paths: Paths) -> str:
    tag = (paths.rabbitmq / "node-tag")
    if not tag.exists():
        tag.write_text(secrets.token_hex(4))
    return f"conveyor-{tag.read_text().strip()}@localhost"


def _password(paths: Paths) -> str:
    secret = paths.rabbitmq / "password"
    if not secret.exists():
        secret.write_text(secrets.token_urlsafe(18))
        secret.chmod(0o600)
    return secret.read_text().strip()


def _env(paths: Paths, ports: Ports) -> dict[str, str]:
    base = paths.rabbitmq
    home = base / "home"
    home.mkdir(parents=True, exist_ok=True)
    cookie = home / ".erlang.cookie"
    if not cookie.exists():
        cookie.write_text(secrets.token_hex(16))
        cookie.chmod(0o400)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
    env.update(
        HOME=str(home),
        ERL_EPMD_ADDRESS="127.0.0.1",
        ERL_EPMD_PORT=str(ports.epmd),
        RABBITMQ_NODENAME=_node(paths),
        RABBITMQ_CONF_ENV_FILE=str(base / "rabbitmq-env.conf"),
        RABBITMQ_CONFIG_FILE=str(base / "rabbitmq.conf"),
        RABBITMQ_ENABLED_PLUGINS_FILE=str(base / "enabled_plugins"),
        RABBITMQ_MNESIA_BASE=str(base / "mnesia"),
        RABBITMQ_LOG_BASE=str(paths.logs),
        RABBITMQ_LOGS=str(paths.logs / "rabbitmq-node.log"),
        RABBITMQ_PID_FILE=str(base / "rabbitmq.pid"),
        RABBITMQ_DIST_PORT=str(ports.erlang_dist),
        RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}",
        RABBITMQ_CTL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}",
    )
    return env


def _configure(paths: Paths, ports: Ports) -> bool:
    """Write the broker's configuration; whether it changed (a running broker then needs a
    restart to take it, e.g. the TLS listener a newer test bed adds)."""
    base = paths.rabbitmq
    (base / "rabbitmq-env.conf").write_text("# the test bed sets everything in the environment\n")
    (base / "enabled_plugins").write_text("[].\n")
    config = base / "rabbitmq.conf"
    before = config.read_text() if config.exists() else None
    config.write_text(
        "\n".join(
            [
                f"listeners.tcp.1 = 127.0.0.1:{ports.amqp}",
                f"listeners.ssl.1 = 127.0.0.1:{ports.amqps}",
                f"ssl_options.cacertfile = {paths.amqp_ca}",
                f"ssl_options.certfile = {paths.pki / 'rabbitmq.crt'}",
                f"ssl_options.keyfile = {paths.pki / 'rabbitmq.key'}",
                # Server authentication only: clients log in with the password, as on the
                # plain listener.
                "ssl_options.verify = verify_none",
                "ssl_options.fail_if_no_peer_cert = false",
                f"default_user = {USER}",
                f"default_pass = {_password(paths)}",
                "default_vhost = /",
                "loopback_users = none",
                "log.console = false",
                "log.file.level = info",
                "",
            ]
        )
    )
    return config.read_text() != before


def amqp_url(paths: Paths, ports: Ports, vhost: str = "/") -> str:
    quoted = urllib.parse.quote(vhost, safe="")
    return f"amqp://{USER}:{_password(paths)}@127.0.0.1:{ports.amqp}/{quoted}"


def amqps_url(paths: Paths, ports: Ports, vhost: str = "/") -> str:
    """The TLS listener's URL, by the name its certificate carries (verify with amqp_ca)."""
    quoted = urllib.parse.quote(vhost, safe="")
    return f"amqps://{USER}:{_password(paths)}@localhost:{ports.amqps}/{quoted}"


def start(paths: Paths, ports: Ports) -> None:
    if not installed():
        raise RuntimeError(
            "rabbitmq-server is not installed: run `make testbed-deps` "
            "(apt-get install rabbitmq-server) first"
        )
    pki.ensure_broker(paths.pki)
    if _configure(paths, ports) and procs.running_pid(paths.pids, "rabbitmq") is not None:
        stop(paths)  # running on an older configuration: start again on this one
    env = _env(paths, ports)
    state = paths.root
    epmd = shutil.which("epmd") or "epmd"
    procs.start("epmd", [epmd, "-port", str(ports.epmd), "-address", "127.0.0.1"],
                pids=paths.pids, logs=paths.logs, state=state, env=env)
    procs.start("rabbitmq", [str(SERVER)], pids=paths.pids, logs=paths.logs, state=state,
                env=env)
    for path, url in ((paths.amqp_url_file, amqp_url(paths, ports)),
                      (paths.amqps_url_file, amqps_url(paths, ports))):
        path.write_text(url + "\n")
        path.chmod(0o600)


def wait(paths: Paths, ports: Ports, timeout: float = 90) -> None:
    """Until both listeners take a login (the TLS one verified with the test bed's CA)."""
    plain = pika.URLParameters(amqp_url(paths, ports))
    tls = pika.URLParameters(amqps_url(paths, ports))
    tls.ssl_options = pika.SSLOptions(ssl.create_default_context(cafile=str(paths.amqp_ca)),
                                      server_hostname="localhost")
    for params in (plain, tls):
        params.connection_attempts = 1
        params.socket_timeout = 2

    def check() -> bool:
        if procs.running_pid(paths.pids, "rabbitmq") is None:
            raise RuntimeError(f"RabbitMQ exited; see {paths.logs / 'rabbitmq.log'}")
        for params in (plain, tls):
            pika.BlockingConnection(params).close()
        return True

    procs.wait_until(check, timeout, "RabbitMQ", interval=0.3)


def stop(paths: Paths) -> None:
    procs.stop(paths.pids, "rabbitmq", grace=20)
    procs.stop(paths.pids, "epmd", grace=5)


def ctl(paths: Paths, ports: Ports, *args: str) -> str:
    """Run rabbitmqctl against this test bed's node; raise with its output on failure."""
    result = subprocess.run(
        [str(CTL), "-n", _node(paths), *args],
        env=_env(paths, ports), capture_output=True, text=True, timeout=120, check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def add_vhost(paths: Paths, ports: Ports, vhost: str) -> str:
    """Create `vhost` with full rights for the test bed's user; return its AMQP URL."""
    ctl(paths, ports, "add_vhost", vhost)
    ctl(paths, ports, "set_permissions", "-p", vhost, USER, ".*", ".*", ".*")
    return amqp_url(paths, ports, vhost)


def delete_vhost(paths: Paths, ports: Ports, vhost: str) -> None:
    ctl(paths, ports, "delete_vhost", vhost)
