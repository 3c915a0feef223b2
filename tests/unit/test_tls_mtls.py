"""certmint.tls.MTLS: configuration from the environment, one-generation reads of a kubelet-mounted
Secret, reload on change, trust anchors that come and go, peer identity rules, CRLs."""
from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from pathlib import Path

import pytest
from certmint import tls
from certmint.tls import (
    MTLS,
    DNSName,
    MissingFile,
    Peer,
    PeerPolicy,
    SpiffeID,
    SpiffeTrustDomain,
    TLSConfigError,
)
from certmint.tls._der import pem_certificates, serial_and_not_after
from certmint.tls._files import TLSFiles, read_snapshot
from certmint.tls.testing import SecretVolume, TestCA
from cryptography import x509

SERVER_NAMES = {"dns_names": ["localhost"], "ip_addresses": ["127.0.0.1"]}


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA("unit root")


def wait_for(predicate, timeout: float = 5.0, what: str = "condition") -> float:
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what} not met within {timeout} s")
        time.sleep(0.005)
    return time.monotonic() - start


class Server:
    """A blocking TLS server on 127.0.0.1 answering each connection with the client's serial."""

    def __init__(self, ctx: ssl.SSLContext):
        self.ctx, self.errors = ctx, []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.address = self.sock.getsockname()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            try:
                with self.ctx.wrap_socket(conn, server_side=True) as s:
                    s.sendall(s.getpeercert()["serialNumber"].encode() + b"\n")
            except (OSError, ValueError) as e:
                self.errors.append(e)

    def close(self) -> None:
        self.sock.close()


def call(server: Server, ctx: ssl.SSLContext) -> tuple[str, str]:
    """(the serial the server saw from us, the server's serial) over one connection."""
    with socket.create_connection(server.address, timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            theirs = s.getpeercert()["serialNumber"]
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(100)
                if not chunk:
                    raise ConnectionError("the server closed the connection")
                data += chunk
    return data.decode().strip(), theirs


# --- configuration ----------------------------------------------------------------------------------


def test_env_paths_and_ca_path_alias(tmp_path, ca):
    issued = ca.issue("svc", **SERVER_NAMES)
    for name, data in issued.secret().items():
        (tmp_path / name).write_bytes(data)
    env = {"MTLS_ENABLED": "true", "MTLS_CERT_PATH": str(tmp_path / "tls.crt"),
           "MTLS_KEY_PATH": str(tmp_path / "tls.key"), "MTLS_CA_PATH": str(tmp_path / "ca.crt")}
    with MTLS.from_env(env) as mtls:
        assert mtls.generation.serial == issued.serial
        assert mtls.files.source("ca") == "MTLS_CA_PATH"
    env["MTLS_CA_CERT_PATH"] = env.pop("MTLS_CA_PATH")
    with MTLS.from_env(env, watch=False) as mtls:
        assert mtls.files.source("ca") == "MTLS_CA_CERT_PATH"


def test_env_directory_of_a_mounted_secret(tmp_path, ca):
    issued = ca.issue("svc", **SERVER_NAMES)
    SecretVolume(tmp_path).write(issued.secret())
    with MTLS.from_env({"MTLS_DIR": str(tmp_path)}, watch=False) as mtls:
        assert mtls.generation.serial == issued.serial
        assert mtls.generation.name.startswith("..20")


def test_disabled_gives_none_and_bad_flag_is_an_error():
    assert MTLS.from_env({"MTLS_ENABLED": "false", "MTLS_CERT_PATH": "/nope"}) is None
    with pytest.raises(TLSConfigError, match="MTLS_ENABLED='maybe'"):
        MTLS.from_env({"MTLS_ENABLED": "maybe"})


def test_unset_variables_are_named():
    with pytest.raises(TLSConfigError) as e:
        MTLS.from_env({"MTLS_ENABLED": "1", "MTLS_CERT_PATH": "/etc/certs/tls.crt"})
    assert "MTLS_KEY_PATH" in str(e.value) and "MTLS_CA_CERT_PATH or MTLS_CA_PATH" in str(e.value)


def test_missing_file_names_the_path_and_the_variable(tmp_path, ca):
    issued = ca.issue("svc", **SERVER_NAMES)
    (tmp_path / "tls.crt").write_bytes(issued.cert_pem)
    (tmp_path / "tls.key").write_bytes(issued.key_pem)
    env = {"MTLS_CERT_PATH": str(tmp_path / "tls.crt"), "MTLS_KEY_PATH": str(tmp_path / "tls.key"),
           "MTLS_CA_CERT_PATH": str(tmp_path / "missing-ca.crt")}
    with pytest.raises(MissingFile) as e:
        MTLS.from_env(env, watch=False)
    assert e.value.path == str(tmp_path / "missing-ca.crt") and e.value.source == "MTLS_CA_CERT_PATH"
    assert str(e.value) == f"{tmp_path / 'missing-ca.crt'} does not exist (set by MTLS_CA_CERT_PATH)"
    assert e.value.__cause__ is None and e.value.__context__ is None  # one error, not an ssl traceback


def test_a_key_that_does_not_match_is_reported_without_key_material(tmp_path, ca):
    one, other = ca.issue("one"), ca.issue("other")
    SecretVolume(tmp_path).write(one.secret() | {"tls.key": other.key_pem})
    with pytest.raises(tls.InvalidMaterial) as e:
        MTLS(tmp_path, watch=False)
    message = str(e.value)
    assert str(tmp_path / "tls.key") in message and "PRIVATE KEY" not in message
    assert other.key_pem.decode().splitlines()[1] not in message


# --- one generation ---------------------------------------------------------------------------------


def test_kubelet_layout(tmp_path, ca):
    volume = SecretVolume(tmp_path)
    first = volume.write(ca.issue("a").secret())
    second = volume.write(ca.issue("b").secret())
    entries = sorted(p.name for p in tmp_path.iterdir())
    assert entries == sorted([second, "..data", "ca.crt", "tls.crt", "tls.key"])  # the old generation is gone
    assert first != second and second.startswith("..20") and second.split(".")[-1].isdigit()
    assert (tmp_path / "..data").readlink() == Path(second)
    assert (tmp_path / "tls.crt").readlink() == Path("..data/tls.crt")


def test_a_read_resolves_data_once_and_reads_every_file_from_that_generation(tmp_path, ca):
    volume = SecretVolume(tmp_path)
    generation = volume.write(ca.issue("a").secret())
    snap = read_snapshot(TLSFiles.from_directory(tmp_path))
    assert snap.generation == generation
    assert {p.parent.name for p in snap.paths.values()} == {generation}


def test_reads_racing_swaps_never_mix_generations(tmp_path, ca):
    """A writer swaps generations as fast as it can while MTLS reloads as fast as it can: every
    generation MTLS accepts pairs a certificate with its own key and its own CA (load_cert_chain
    refuses a mismatched pair; the serial and anchors are compared to what was written)."""
    roots = [TestCA(f"race root {i}") for i in range(2)]
    secrets = [roots[i % 2].issue(f"leaf-{i}") for i in range(6)]
    volume = SecretVolume(tmp_path)
    volume.write(secrets[0].secret())
    written = {s.serial: s.ca_pem for s in secrets}
    stop = threading.Event()

    def swap() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            volume.write(secrets[i % len(secrets)].secret())

    writer = threading.Thread(target=swap)
    writer.start()
    loads = 0
    try:
        with MTLS(tmp_path, watch=False) as mtls:
            # Until 30 generations were loaded mid-race (a few seconds on a busy machine).
            deadline = time.monotonic() + 20
            while loads < 30 and time.monotonic() < deadline:
                if mtls.reload():
                    loads += 1
                    assert written[mtls.generation.serial] == mtls.generation.ca_pem
    finally:
        stop.set()
        writer.join()
    assert loads >= 10, f"only {loads} reloads raced the writer"


# --- reload -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("inotify", [True, False], ids=["inotify", "poll"])
def test_a_renewal_is_served_without_a_restart(tmp_path, ca, inotify):
    server_volume, client_volume = SecretVolume(tmp_path / "s"), SecretVolume(tmp_path / "c")
    server_volume.write(ca.issue("server", **SERVER_NAMES).secret())
    client_volume.write(ca.issue("client").secret())
    with MTLS(tmp_path / "s", inotify=inotify) as server, MTLS(tmp_path / "c", inotify=inotify) as client:
        assert server.watch_mode == ("inotify" if inotify else "poll")
        srv = Server(server.server_context())
        try:
            seen, served = call(srv, client.client_context())
            assert (seen, served) == (client.generation.serial, server.generation.serial)
            renewed_server, renewed_client = ca.issue("server", **SERVER_NAMES), ca.issue("client")
            server_volume.write(renewed_server.secret())
            client_volume.write(renewed_client.secret())
            took = wait_for(lambda: (server.generation.serial, client.generation.serial)
                            == (renewed_server.serial, renewed_client.serial), what="reload")
            assert took < (0.5 if inotify else 2.5), f"reload took {took:.2f} s"
            assert call(srv, client.client_context()) == (renewed_client.serial, renewed_server.serial)
        finally:
            srv.close()


def test_a_bad_update_keeps_the_current_generation_until_a_good_one(tmp_path, ca, caplog):
    volume = SecretVolume(tmp_path)
    good = ca.issue("svc", **SERVER_NAMES)
    volume.write(good.secret())
    with MTLS(tmp_path, watch=False) as mtls:
        volume.write(good.secret() | {"tls.key": b""})
        with caplog.at_level(logging.WARNING, logger="certmint.tls"):
            assert mtls.reload() is False
            assert mtls.reload() is False
        assert mtls.generation.serial == good.serial
        assert len([r for r in caplog.records if "keeping" in r.message]) == 1  # said once, not every poll
        renewed = ca.issue("svc", **SERVER_NAMES)
        volume.write(renewed.secret())
        assert mtls.reload() is True and mtls.generation.serial == renewed.serial


def test_a_dropped_anchor_is_no_longer_trusted(tmp_path):
    """ca.crt first trusts two roots, then only one: a client of the dropped root is refused by new
    handshakes, which an SSLContext reloaded in place could not do."""
    old_root, new_root = TestCA("old root"), TestCA("new root")
    server_volume = SecretVolume(tmp_path / "s")
    server_cert = new_root.issue("server", **SERVER_NAMES)
    server_volume.write(server_cert.secret(ca_pem=new_root.cert_pem + old_root.cert_pem))
    old_client, new_client = SecretVolume(tmp_path / "old"), SecretVolume(tmp_path / "new")
    old_client.write(old_root.issue("old-client").secret(ca_pem=new_root.cert_pem))
    new_client.write(new_root.issue("new-client").secret())
    with MTLS(tmp_path / "s") as server, MTLS(tmp_path / "old", watch=False) as old, \
            MTLS(tmp_path / "new", watch=False) as new:
        srv = Server(server.server_context())
        try:
            assert server.generation.anchors == 2
            assert call(srv, old.client_context())[0] == old.generation.serial
            assert call(srv, new.client_context())[0] == new.generation.serial
            server_volume.write(server_cert.secret(ca_pem=new_root.cert_pem))
            wait_for(lambda: server.generation.anchors == 1, what="reload")
            with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
                call(srv, old.client_context())
            assert call(srv, new.client_context())[0] == new.generation.serial
            assert any("unknown ca" in str(e).lower() or "certificate verify failed" in str(e).lower()
                       for e in srv.errors)
        finally:
            srv.close()


def test_the_original_api_still_works(tmp_path, ca):
    volume = SecretVolume(tmp_path)
    volume.write(ca.issue("server.test", **SERVER_NAMES).secret())
    ctx = tls.server_context(tmp_path)
    reloader = tls.CertificateReloader(ctx, tmp_path, interval=5).start()
    try:
        renewed = ca.issue("server.test", **SERVER_NAMES)
        volume.write(renewed.secret())
        client_volume = SecretVolume(tmp_path / "client")
        client_volume.write(ca.issue("client").secret())
        srv = Server(ctx)
        try:
            wait_for(lambda: call(srv, tls.client_context(tmp_path / "client"))[1] == renewed.serial,
                     what="the renewed certificate served by the reloaded context")
        finally:
            srv.close()
    finally:
        reloader.stop()


# --- peer identity ----------------------------------------------------------------------------------


def peer(*uris: str, dns: tuple[str, ...] = ()) -> Peer:
    return Peer.from_getpeercert({"subjectAltName": tuple(("URI", u) for u in uris) + tuple(("DNS", d) for d in dns),
                                  "serialNumber": "01"})


def test_rules():
    assert SpiffeID("spiffe://example.org/ns/a/sa/x").matches(peer("spiffe://example.org/ns/a/sa/x"))
    assert not SpiffeID("spiffe://example.org/ns/a/sa/x").matches(peer("spiffe://example.org/ns/a/sa/xy"))
    prefix = SpiffeTrustDomain("example.org", "/ns/prod")
    assert prefix.matches(peer("spiffe://example.org/ns/prod")) and prefix.matches(peer("spiffe://example.org/ns/prod/sa/a"))
    assert not prefix.matches(peer("spiffe://example.org/ns/production/sa/a"))
    assert not prefix.matches(peer("spiffe://other.org/ns/prod/sa/a"))
    assert SpiffeTrustDomain("example.org").matches(peer("spiffe://example.org/anything"))
    assert DNSName("api.svc").matches(peer(dns=("API.svc",)))
    # Two SPIFFE IDs in one certificate name no one.
    assert peer("spiffe://example.org/a", "spiffe://example.org/b").spiffe_id is None
    assert tls.rule("spiffe://example.org/ns/prod/*") == prefix
    assert tls.rule("dns:api") == DNSName("api")
    with pytest.raises(ValueError):
        SpiffeID("spiffe://Example.org/x")
    with pytest.raises(ValueError):
        PeerPolicy.of([], "client")


def test_identity_is_checked_in_the_handshake_both_ways(tmp_path, ca, caplog):
    SecretVolume(tmp_path / "s").write(
        ca.issue("server", uris=["spiffe://example.org/ns/prod/sa/api"], **SERVER_NAMES).secret())
    SecretVolume(tmp_path / "ok").write(ca.issue("ok", uris=["spiffe://example.org/ns/prod/sa/web"]).secret())
    SecretVolume(tmp_path / "no").write(ca.issue("no", uris=["spiffe://example.org/ns/dev/sa/web"]).secret())
    with MTLS(tmp_path / "s", watch=False) as server, MTLS(tmp_path / "ok", watch=False) as ok, \
            MTLS(tmp_path / "no", watch=False) as no:
        srv = Server(server.server_context(allowed_peers=["spiffe://example.org/ns/prod/*"]))
        try:
            assert call(srv, ok.client_context(server_identity="spiffe://example.org/ns/prod/sa/api"))[0] \
                == ok.generation.serial
            with caplog.at_level(logging.WARNING, logger="certmint.tls"):
                with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
                    call(srv, no.client_context())
                wait_for(lambda: srv.errors, what="the server's refusal")
                assert isinstance(srv.errors[-1], tls.PeerNotAllowed)
                with pytest.raises(tls.PeerNotAllowed):
                    call(srv, ok.client_context(server_identity="spiffe://example.org/ns/prod/sa/other"))
            lines = [r.getMessage() for r in caplog.records]
            assert any("refused client spiffe://example.org/ns/dev/sa/web" in m
                       and "spiffe://example.org/ns/prod/*" in m for m in lines), lines
            assert any("refused server spiffe://example.org/ns/prod/sa/api" in m
                       and "rule spiffe://example.org/ns/prod/sa/other" in m for m in lines), lines
        finally:
            srv.close()


# --- CRL --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("der", [False, True], ids=["pem", "der"])
def test_crl_refuses_a_revoked_client_and_reloads_with_the_rest(tmp_path, der):
    root = TestCA("crl root")
    server_cert = root.issue("server", **SERVER_NAMES)
    volume = SecretVolume(tmp_path / "s")
    revoked_client = root.issue("revoked")
    volume.write(server_cert.secret(**{"ca.crl": root.crl([revoked_client.serial], der=der)}))
    SecretVolume(tmp_path / "c").write(revoked_client.secret())
    with MTLS(tmp_path / "s", crl_path=tmp_path / "s" / "ca.crl") as server, \
            MTLS(tmp_path / "c", watch=False) as client:
        assert server.generation.crl
        srv = Server(server.server_context())
        try:
            with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
                call(srv, client.client_context())
            wait_for(lambda: srv.errors, what="the server's refusal")
            assert "revoked" in str(srv.errors[-1])
            volume.write(server_cert.secret(**{"ca.crl": root.crl([], der=der)}))  # revocation lifted
            wait_for(lambda: _serves(srv, client), what="the client served under the new CRL")
        finally:
            srv.close()


def _serves(srv: Server, client: MTLS) -> bool:
    try:
        return call(srv, client.client_context())[0] == client.generation.serial
    except (ssl.SSLError, OSError):
        return False


# --- the standard library's view of a certificate ---------------------------------------------------


def test_serial_and_not_after_match_cryptography(ca):
    issued = ca.issue("x")
    der = pem_certificates(issued.cert_pem)[0]
    cert = x509.load_der_x509_certificate(der)
    serial, not_after = serial_and_not_after(der)
    assert int(serial, 16) == cert.serial_number and serial == issued.serial
    assert not_after == cert.not_valid_after_utc


def test_a_dropped_anchor_cannot_come_back_through_session_resumption(tmp_path):
    """A client of the dropped root that kept its TLS session from before the rotation gets a full
    handshake, and is refused: the server resumes no session."""
    old_root, new_root = TestCA("old root"), TestCA("new root")
    server_volume = SecretVolume(tmp_path / "s")
    server_cert = new_root.issue("server", **SERVER_NAMES)
    server_volume.write(server_cert.secret(ca_pem=new_root.cert_pem + old_root.cert_pem))
    SecretVolume(tmp_path / "old").write(old_root.issue("old-client").secret(ca_pem=new_root.cert_pem))
    with MTLS(tmp_path / "s") as server, MTLS(tmp_path / "old", watch=False) as old:
        srv = Server(server.server_context())
        try:
            ctx = old.client_context()
            with socket.create_connection(srv.address, timeout=5) as raw, \
                    ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                s.recv(100)
                session = s.session
            server_volume.write(server_cert.secret(ca_pem=new_root.cert_pem))
            wait_for(lambda: server.generation.anchors == 1, what="reload")
            with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
                with socket.create_connection(srv.address, timeout=5) as raw, \
                        ctx.wrap_socket(raw, server_hostname="127.0.0.1", session=session) as s:
                    assert not s.session_reused
                    if not s.recv(100):
                        raise ConnectionError("closed by the server")
        finally:
            srv.close()
