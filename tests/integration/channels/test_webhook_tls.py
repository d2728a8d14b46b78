"""The webhook transport connects to the address it checked, yet TLS still speaks to the URL's
hostname: SNI carries the hostname and the certificate must be valid for it.

A loopback TLS receiver with a certificate from a throwaway CA; `hooks.example.com` "resolves"
(a fake resolver, no DNS) to 127.0.0.1, which the local-stack setting admits."""

from __future__ import annotations

import datetime as dt
import http.server
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from herald.channels.ports import WebhookDelivery
from herald.channels.result import TRANSPORT, Accepted, RetryLater
from herald.channels.webhook_http import UrllibWebhookTransport

pytestmark = pytest.mark.integration


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_ca_and_leaf(hostname: str, directory: Path) -> tuple[str, Path, Path]:
    """(CA certificate PEM, leaf certificate file, leaf key file) for `hostname`."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("Herald test CA"))
        .issuer_name(_name("Herald test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name(hostname))
        .issuer_name(ca.subject)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert_file, key_file = directory / f"{hostname}.pem", directory / f"{hostname}.key"
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return ca.public_bytes(serialization.Encoding.PEM).decode(), cert_file, key_file


@dataclass
class TlsReceiver:
    port: int
    ca_pem: str
    server_names: list[str | None] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[TlsReceiver]:
    """A TLS receiver on 127.0.0.1 whose certificate is valid for hooks.example.com only."""
    ca_pem, cert_file, key_file = make_ca_and_leaf("hooks.example.com", tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    state = TlsReceiver(port=0, ca_pem=ca_pem)
    context.sni_callback = lambda _sock, name, _ctx: state.server_names.append(name)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            state.hosts.append(self.headers["Host"])
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    state.port = server.server_port
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def transport_for(receiver: TlsReceiver) -> UrllibWebhookTransport:
    return UrllibWebhookTransport(
        timeout=2,
        allow_loopback=True,
        resolve=lambda host, port: ["127.0.0.1"] if host.endswith("example.com") else [],
        ssl_context=ssl.create_default_context(cadata=receiver.ca_pem),
    )


def delivery(url: str) -> WebhookDelivery:
    return WebhookDelivery(url, b'{"id":"ntf-1"}', "secret", "ntf-1", "order_webhook")


def test_tls_names_the_host_while_connecting_to_the_checked_address(receiver: TlsReceiver) -> None:
    result = transport_for(receiver).post(delivery(f"https://hooks.example.com:{receiver.port}/h"))

    assert isinstance(result, Accepted)
    assert receiver.server_names == ["hooks.example.com"]  # SNI
    assert receiver.hosts == [f"hooks.example.com:{receiver.port}"]


def test_a_certificate_for_another_name_is_not_accepted(receiver: TlsReceiver) -> None:
    # other.example.com resolves to the same checked address, but the certificate is not its own
    result = transport_for(receiver).post(delivery(f"https://other.example.com:{receiver.port}/h"))

    assert isinstance(result, RetryLater) and result.code == TRANSPORT
    assert "certificate" in result.reason.lower()
    assert receiver.hosts == []
