"""certmint.tls: mutual TLS from mounted Secret files, and hot reload after a renewal."""
from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading
from pathlib import Path

import pytest
from cryptography import x509

from certmint import tls
from certmint.issuance import issue_certificate
from certmint.issuers import issuer_state
from certmint.model import parse_certificate_spec, parse_issuer_spec
from certmint.pki import load_ca
from certmint.policy import IssuerState

NOW = dt.datetime.now(dt.timezone.utc)


@pytest.fixture(scope="module")
def ca():
    spec = parse_certificate_spec({"secretName": "ca", "commonName": "Test CA", "isCA": True,
                                   "privateKey": {"algorithm": "ECDSA"}, "issuerRef": {"name": "x"}})
    root = issue_certificate(spec, issuer_state(parse_issuer_spec({"selfSigned": {}}), None, NOW), None, NOW)
    return IssuerState(True, "KeyPairVerified", "", load_ca(root.tls_crt, root.key_pem, root.ca_crt, NOW))


def mount(directory: Path, ca, common_name: str, usage: str) -> Path:
    spec = parse_certificate_spec({"secretName": "s", "commonName": common_name, "dnsNames": [common_name],
                                   "usages": ["digital signature", usage], "privateKey": {"algorithm": "ECDSA"},
                                   "issuerRef": {"name": "x"}})
    issued = issue_certificate(spec, ca, None, NOW)
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in ((tls.CERT, issued.tls_crt), (tls.KEY, issued.key_pem), (tls.CA, issued.ca_crt)):
        (directory / name).write_bytes(data)
    return directory


def handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> tuple[str, x509.Certificate]:
    """One TLS connection over loopback; returns the client name the server saw, and the server's certificate."""
    seen: dict = {}
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)

        def serve() -> None:
            conn, _ = listener.accept()
            with server_ctx.wrap_socket(conn, server_side=True) as s:
                seen["client"] = dict(x[0] for x in s.getpeercert()["subject"])["commonName"]
                s.sendall(b"ok")

        t = threading.Thread(target=serve)
        t.start()
        with socket.create_connection(listener.getsockname()) as raw:
            with client_ctx.wrap_socket(raw, server_hostname="server.test") as s:
                assert s.recv(2) == b"ok"
                der = s.getpeercert(binary_form=True)
        t.join(5)
    return seen["client"], x509.load_der_x509_certificate(der)


def test_mutual_tls_from_mounted_files(tmp_path, ca):
    server = mount(tmp_path / "server", ca, "server.test", "server auth")
    client = mount(tmp_path / "client", ca, "client.test", "client auth")
    name, _ = handshake(tls.server_context(server), tls.client_context(client))
    assert name == "client.test"


def test_reloader_serves_the_renewed_certificate_without_a_restart(tmp_path, ca):
    server = mount(tmp_path / "server", ca, "server.test", "server auth")
    client_ctx = tls.client_context(mount(tmp_path / "client", ca, "client.test", "client auth"))
    ctx = tls.server_context(server)
    reloader = tls.CertificateReloader(ctx, server)
    _, first = handshake(ctx, client_ctx)
    assert reloader.reload_if_changed() is False
    mount(server, ca, "server.test", "server auth")  # what the kubelet does after a renewal
    assert reloader.reload_if_changed() is True
    _, second = handshake(ctx, client_ctx)
    assert second.serial_number != first.serial_number


def test_half_written_files_are_not_loaded(tmp_path, ca):
    server = mount(tmp_path / "server", ca, "server.test", "server auth")
    reloader = tls.CertificateReloader(tls.server_context(server), server)
    (server / tls.KEY).write_bytes(b"")
    assert reloader.reload_if_changed() is False
