"""The test bed's certificates, service-account keys and kubeconfigs, made once per state dir."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = datetime.timedelta(days=3650)
# The addresses the test bed's services are reached at: the host's loopback, and the container
# node's IP in its netns (netns.NODE_IP, where the bridge forwards them for pods).
_SERVICE_IPS = ["127.0.0.1", "10.254.0.1"]
# Written in the services' done markers: a state directory whose certificates predate the
# container node's address gets new ones.
_SERVICE_MARK = "ok " + " ".join(_SERVICE_IPS) + "\n"


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attrs)


def _issue(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    *,
    server_names: tuple[list[str], list[str]] | None = None,
    client: bool = False,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    issuer_name, signing_key = (issuer[0].subject, issuer[1]) if issuer else (subject, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + _VALIDITY)
    )
    if issuer is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        builder = builder.add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), True
        )
    else:
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
        if server_names:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
            dns, ips = server_names
            sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
            sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), False)
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), False)
        builder = builder.add_extension(
            x509.KeyUsage(True, False, True, False, False, False, False, False, False), True
        )
    return builder.sign(signing_key, hashes.SHA256())


def ensure(pki: Path) -> None:
    """Create the CA, the API server's serving cert, an admin client cert and the SA keys."""
    if (pki / "done").exists():
        return
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _issue(_name("conveyor-testbed-ca"), ca_key, None)
    _write_key(pki / "ca.key", ca_key)
    _write_cert(pki / "ca.crt", ca)

    server_key = ec.generate_private_key(ec.SECP256R1())
    dns = ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
           "kubernetes.default.svc.cluster.local"]
    server = _issue(_name("kube-apiserver"), server_key, (ca, ca_key),
                    server_names=(dns, ["127.0.0.1", "10.0.0.1"]))
    _write_key(pki / "apiserver.key", server_key)
    _write_cert(pki / "apiserver.crt", server)

    admin_key = ec.generate_private_key(ec.SECP256R1())
    admin = _issue(_name("conveyor-testbed-admin", "system:masters"), admin_key, (ca, ca_key),
                   client=True)
    _write_key(pki / "admin.key", admin_key)
    _write_cert(pki / "admin.crt", admin)

    # Service-account tokens are signed with RSA, which every client library verifies.
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _write_key(pki / "sa.key", sa_key)
    (pki / "sa.pub").write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    (pki / "done").write_text("ok\n")


def ensure_broker(pki: Path) -> None:
    """Create RabbitMQ's TLS certificate for localhost and 127.0.0.1, signed by a CA of its own.

    A CA apart from the cluster's, so that the cluster's CA is a real wrong CA for the
    broker (a client that trusts it must fail to verify RabbitMQ). Made apart from `ensure`
    so that a state directory older than the TLS listener gets it too.
    """
    if _marked(pki / "amqp-done"):
        return
    for stale in ("s3-done", "kafka-done"):
        (pki / stale).unlink(missing_ok=True)  # signed by the CA about to be replaced
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _issue(_name("conveyor-testbed-amqp-ca"), ca_key, None)
    _write_key(pki / "amqp-ca.key", ca_key)
    _write_cert(pki / "amqp-ca.crt", ca)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _issue(_name("rabbitmq"), server_key, (ca, ca_key),
                    server_names=(["localhost"], _SERVICE_IPS))
    _write_key(pki / "rabbitmq.key", server_key)
    _write_cert(pki / "rabbitmq.crt", server)
    (pki / "amqp-done").write_text(_SERVICE_MARK)


def _marked(done: Path) -> bool:
    return done.exists() and done.read_text() == _SERVICE_MARK


def ensure_store(pki: Path) -> None:
    """The object store's TLS certificate for localhost and 127.0.0.1, signed by the CA of
    RabbitMQ's (`ensure_broker` first): one CA for the test bed's services outside the
    cluster, so a client that trusts the cluster's CA fails to verify the store too."""
    ensure_broker(pki)
    if _marked(pki / "s3-done"):
        return
    _service_certificate(pki, "s3server", "conveyor-s3")
    (pki / "s3-done").write_text(_SERVICE_MARK)


def _service_certificate(pki: Path, stem: str, common_name: str) -> None:
    """`<stem>.key` and `<stem>.crt`: a certificate for localhost and 127.0.0.1 signed by the
    CA of the test bed's services (RabbitMQ's, made first)."""
    ensure_broker(pki)
    ca_key = serialization.load_pem_private_key((pki / "amqp-ca.key").read_bytes(), None)
    ca = x509.load_pem_x509_certificate((pki / "amqp-ca.crt").read_bytes())
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _issue(_name(common_name), server_key, (ca, ca_key),  # type: ignore[arg-type]
                    server_names=(["localhost"], _SERVICE_IPS))
    _write_key(pki / f"{stem}.key", server_key)
    _write_cert(pki / f"{stem}.crt", server)


def ensure_kafka(pki: Path) -> None:
    """Kafka's TLS certificate for localhost and 127.0.0.1, signed by the CA of RabbitMQ's
    and the store's, and the broker's PEM key store (key and certificate in one file)."""
    ensure_broker(pki)
    if _marked(pki / "kafka-done"):
        return
    _service_certificate(pki, "kafka", "conveyor-kafka")
    store = pki / "kafka-keystore.pem"
    store.write_bytes((pki / "kafka.key").read_bytes() + (pki / "kafka.crt").read_bytes())
    store.chmod(0o600)
    (pki / "kafka-done").write_text(_SERVICE_MARK)


def ensure_kubelet(pki: Path, node: str, node_ip: str) -> None:
    """The container node's certificates, signed by the cluster's CA: the kubelet's client
    certificate (`system:node:<node>` in `system:nodes`, for the Node authorizer), its serving
    certificate (for `node` and `node_ip`, verified by the API server), and the API server's
    client certificate towards kubelets (`kube-apiserver-kubelet-client`, bound to
    `system:kubelet-api-admin` by containers.py)."""
    if (pki / "kubelet-done").exists():
        return
    ca_key = serialization.load_pem_private_key((pki / "ca.key").read_bytes(), None)
    ca = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
    issuer = (ca, ca_key)
    for stem, subject, kwargs in (
        ("kubelet-client", _name(f"system:node:{node}", "system:nodes"), {"client": True}),
        ("kubelet-serving", _name(node), {"server_names": ([node], [node_ip])}),
        ("apiserver-kubelet-client", _name("kube-apiserver-kubelet-client"), {"client": True}),
    ):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _issue(subject, key, issuer, **kwargs)  # type: ignore[arg-type]
        _write_key(pki / f"{stem}.key", key)
        _write_cert(pki / f"{stem}.crt", cert)
    (pki / "kubelet-done").write_text("ok\n")


def kubeconfig(server: str, ca: Path, user: dict[str, str], name: str = "conveyor-testbed") -> str:
    """A kubeconfig for `server` with the given user entry (client cert or token)."""
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": name, "cluster": {"server": server,
                                                    "certificate-authority": str(ca)}}],
            "users": [{"name": name, "user": user}],
            "contexts": [{"name": name, "context": {"cluster": name, "user": name,
                                                    "namespace": "default"}}],
            "current-context": name,
        },
        sort_keys=False,
    )
