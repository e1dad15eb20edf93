"""The test bed's S3-compatible object store: `conveyor-s3` (hack/s3server, rclone's gofakes3
built from the Go module proxy by hack/build-s3server.sh), on 127.0.0.1 only.

It serves plain HTTP and, on a second port, HTTPS with a certificate for localhost and
127.0.0.1 signed by the CA of the test bed's services (`pki.ensure_store`). It accepts only
requests signed (AWS Signature V4) with this state directory's key pair: the
access key is fixed, the secret is generated once per state directory (like RabbitMQ's
password) and handed to the server in its environment, never on its command line. Objects
are kept in memory: a restart empties the store, buckets included.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path

import boto3
import botocore.config

from . import pki, procs
from .layout import REPO, Paths, Ports

NAME = "s3server"
ACCESS_KEY = "conveyor-testbed"
REGION = "us-east-1"


def binary() -> Path:
    """The cached server, built first on a cold cache (about half a minute)."""
    out = subprocess.run(
        ["bash", str(REPO / "hack" / "build-s3server.sh")],
        check=True, stdout=subprocess.PIPE, text=True,
    )
    return Path(out.stdout.strip().splitlines()[-1])


def secret_key(paths: Paths) -> str:
    secret = paths.s3 / "secret-key"
    if not secret.exists():
        paths.s3.mkdir(parents=True, exist_ok=True)
        secret.write_text(secrets.token_urlsafe(24))
        secret.chmod(0o600)
    return secret.read_text().strip()


def endpoint(ports: Ports) -> str:
    return f"http://127.0.0.1:{ports.s3}"


def tls_endpoint(ports: Ports) -> str:
    """The HTTPS endpoint, by the name its certificate carries; verify it with
    `Paths.amqp_ca` (the CA of the test bed's services outside the cluster)."""
    return f"https://localhost:{ports.s3_tls}"


def env_vars(paths: Paths, ports: Ports) -> dict[str, str]:
    """What `testbed env` exports: the settings conveyor.store reads (CONVEYOR_S3_*), all but
    the bucket, which each user of the test bed makes for itself."""
    return {
        "CONVEYOR_S3_ENDPOINT": endpoint(ports),
        "CONVEYOR_S3_REGION": REGION,
        "CONVEYOR_S3_ACCESS_KEY": ACCESS_KEY,
        "CONVEYOR_S3_SECRET_KEY": secret_key(paths),
    }


def client(paths: Paths, ports: Ports):  # type: ignore[no-untyped-def]
    """A plain boto3 client of the store, for the test bed and the tests' own set-up."""
    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint(ports), region_name=REGION,
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=secret_key(paths),
        config=botocore.config.Config(
            s3={"addressing_style": "path"}, retries={"total_max_attempts": 1},
            connect_timeout=2, read_timeout=5,
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required"),
    )


def start(paths: Paths, ports: Ports) -> None:
    server = binary()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3SERVER_"))}
    env.update(S3SERVER_ACCESS_KEY=ACCESS_KEY, S3SERVER_SECRET_KEY=secret_key(paths))
    pki.ensure_store(paths.pki)
    argv = [str(server), "-listen", f"127.0.0.1:{ports.s3}",
            "-tls-listen", f"127.0.0.1:{ports.s3_tls}",
            "-tls-cert", str(paths.pki / "s3server.crt"),
            "-tls-key", str(paths.pki / "s3server.key")]
    procs.start(NAME, argv, pids=paths.pids, logs=paths.logs, state=paths.root, env=env)


def serving(paths: Paths, ports: Ports) -> bool:
    """Whether the store takes a signed request (ListBuckets)."""
    if procs.running_pid(paths.pids, NAME) is None:
        raise RuntimeError(f"the object store exited; see {paths.logs / (NAME + '.log')}")
    s3 = client(paths, ports)
    try:
        s3.list_buckets()
    finally:
        s3.close()
    return True


def wait(paths: Paths, ports: Ports, timeout: float = 30) -> None:
    procs.wait_until(lambda: serving(paths, ports), timeout, "the object store", interval=0.1)


def stop(paths: Paths) -> None:
    procs.stop(paths.pids, NAME, grace=5)
