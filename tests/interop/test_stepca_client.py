"""certmint.external.stepca against a real step-ca (built by `make tools`, started on 127.0.0.1).

What the step issuer's Ready check and issuance rely on: the health and provisioner checks,
each failure reason, a 24h certificate whose chain the step CLI and OpenSSL accept, the
shared client's connection reuse, that no secret leaks, and the signing rate against the
CA's own rate measured with the step CLI.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
import pickle
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, where bench/ lives

from bench import stepca as stepca_bench  # noqa: E402
from certmint.external.stepca import (  # noqa: E402
    PROVISIONER_NOT_FOUND,
    REFUSED,
    TLS_VERIFICATION_FAILED,
    UNREACHABLE,
    WRONG_PASSWORD,
    StepCAClient,
    StepCAClients,
    StepCAError,
)
from certmint.pki import certificates_pem, generate_key  # noqa: E402
from certmint.pki import describe, template_mismatches  # noqa: E402
from certmint.pki.csr import as_decided_by_ca, build_csr  # noqa: E402
from certmint.pki.signing import CASigner, issue  # noqa: E402
from certmint.pki.types import ECDSA, RSA, CertificateTemplate, KeySpec, Subject  # noqa: E402
from certmint.external.step_issuer import StepIssuers  # noqa: E402
from certmint.issuance import IssuanceError  # noqa: E402
from certmint.model import parse_certificate_spec  # noqa: E402
from certmint.model.issuer import StepSpec, parse_issuer_spec  # noqa: E402
from certmint.policy.types import SecretState  # noqa: E402
from stepca import StepCA, running_step_ca  # noqa: E402

SEED_003_NAMES = ("my-service.default.svc.cluster.local", "my-service.default.svc", "my-service")
DAY = dt.timedelta(hours=24)
P256 = KeySpec(ECDSA, 256)


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    with running_step_ca(tmp_path_factory.mktemp("stepca")) as running:
        yield running


@pytest.fixture
def client(ca):
    c = StepCAClient(ca.url, ca.root_pem)
    yield c
    c.close()


@pytest.fixture
def provisioner(ca, client):
    return client.check(ca.provisioner, ca.kid, ca.password)


def csr_for(*dns_names: str, common_name: str | None = None, key_spec: KeySpec = P256, **names):
    key = generate_key(key_spec)
    template = CertificateTemplate(subject=Subject(common_name=common_name), dns_names=dns_names, **names)
    return key, build_csr(template, key)


def error_of(call, *args, **kwargs) -> StepCAError:
    with pytest.raises(StepCAError) as caught:
        call(*args, **kwargs)
    return caught.value


# ------------------------------------------------------------------ Ready check


def test_ready_check_health_and_provisioner_decrypts(ca, client):
    client.health()
    provisioner = client.check(ca.provisioner, ca.kid, ca.password)
    assert (provisioner.name, provisioner.kid, provisioner.algorithm) == (ca.provisioner, ca.kid, "ES256")
    assert client.root_fingerprint == ca.root_fingerprint
    # a second check with the same password and key skips the PBKDF2 and returns the same handle
    assert client.check(ca.provisioner, ca.kid, ca.password) is provisioner


def test_wrong_password(ca, client):
    error = error_of(client.check, ca.provisioner, ca.kid, ca.password + b"x")
    assert error.reason == WRONG_PASSWORD
    assert "does not decrypt" in error.message and ca.provisioner in error.message
    # the right password still works afterwards, the wrong one still fails afterwards
    client.check(ca.provisioner, ca.kid, ca.password)
    assert error_of(client.check, ca.provisioner, ca.kid, b"").reason == WRONG_PASSWORD


def test_wrong_ca_bundle(ca, tmp_path):
    other_root = StepCA(tmp_path / "other")  # initialised, never started: only its root is used
    wrong = StepCAClient(ca.url, other_root.root_pem)
    error = error_of(wrong.health)
    assert error.reason == TLS_VERIFICATION_FAILED
    assert "does not verify against caBundle" in error.message and "127.0.0.1" in error.message
    assert error_of(wrong.check, ca.provisioner, ca.kid, ca.password).reason == TLS_VERIFICATION_FAILED


@pytest.mark.parametrize("name, kid_suffix, says", [
    ("nobody", "", 'no provisioner "nobody" (it has: admin)'),
    ("admin", "-rotated", "has key id"),
])
def test_provisioner_not_found(ca, client, name, kid_suffix, says):
    error = error_of(client.check, name, ca.kid + kid_suffix, ca.password)
    assert error.reason == PROVISIONER_NOT_FOUND
    assert says in error.message


def test_stopped_ca_then_recovery(ca, client, provisioner):
    _, csr = csr_for("before.example.test")
    client.sign(provisioner, csr, not_after=DAY)  # leaves a kept-alive connection in the pool
    ca.stop()
    try:
        error = error_of(client.health)
        assert error.reason == UNREACHABLE and "refused" in error.message
        assert error_of(client.sign, provisioner, csr, not_after=DAY).reason == UNREACHABLE
    finally:
        ca.start()
    # the same client and handle work again: the dead pooled connection is replaced, and the
    # token's iat is not before the restarted CA's start
    client.check(ca.provisioner, ca.kid, ca.password)
    signed = client.sign(provisioner, csr_for("after.example.test")[1], not_after=DAY)
    san = signed.leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["after.example.test"]


def test_san_the_policy_forbids(client, provisioner):
    _, csr = csr_for("allowed.example.test", "forbidden.invalid")
    error = error_of(client.sign, provisioner, csr, not_after=DAY)
    assert error.reason == REFUSED
    assert 'dns name "forbidden.invalid" not allowed' in error.message


def test_duration_over_the_maximum(client, provisioner):
    _, csr = csr_for("long.example.test")
    error = error_of(client.sign, provisioner, csr, not_after=dt.timedelta(hours=25))
    assert error.reason == REFUSED
    assert "more than the authorized maximum certificate duration" in error.message


def test_a_token_for_other_names_is_refused(ca, client, provisioner):
    """The CA checks the CSR against the token: the client must put exactly the CSR's names in it."""
    _, csr = csr_for("one.example.test")
    _, other = csr_for("two.example.test")
    request = {"csr": csr.public_bytes(serialization.Encoding.PEM).decode(), "ott": client.token(provisioner, other)}
    status, body = client._request("POST", "/1.0/sign", json.dumps(request).encode(),
                                   {"Content-Type": "application/json"})
    assert status in (401, 403), body


# ------------------------------------------------------------------ issuance


def test_seed_003_certificate_chain_verifies(ca, client, provisioner, tmp_path):
    key, csr = csr_for(*SEED_003_NAMES)
    requested_at = dt.datetime.now(dt.timezone.utc)
    signed = client.sign(provisioner, csr, not_after=DAY)
    leaf = signed.leaf
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(san.get_values_for_type(x509.DNSName)) == sorted(SEED_003_NAMES)
    assert abs(leaf.not_valid_after_utc - (requested_at + DAY)) < dt.timedelta(minutes=1)
    assert leaf.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) \
        == key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert signed.root.public_bytes(serialization.Encoding.PEM) == ca.root_pem
    assert [c.subject for c in signed.intermediates] == [
        x509.load_pem_x509_certificate(ca.intermediate_path.read_bytes()).subject]

    tls_crt = tmp_path / "tls.crt"  # as the Secret holds them
    tls_crt.write_bytes(certificates_pem(signed.chain))
    intermediates = tmp_path / "intermediates.pem"
    intermediates.write_bytes(certificates_pem(signed.intermediates))
    ca_crt = tmp_path / "ca.crt"
    ca_crt.write_bytes(certificates_pem([signed.root]))
    step = ca.step("certificate", "verify", str(tls_crt), "--roots", str(ca_crt),
                   "--host", "my-service.default.svc.cluster.local", check=False)
    assert step.returncode == 0, step.stderr
    openssl = subprocess.run(["openssl", "verify", "-CAfile", str(ca_crt), "-untrusted", str(intermediates),
                              "-purpose", "sslserver", str(tls_crt)], capture_output=True, text=True)
    assert openssl.returncode == 0 and openssl.stdout.strip().endswith("OK"), openssl.stdout + openssl.stderr

    # a chain verified against another root is refused by both
    other = tmp_path / "other-root.crt"
    other.write_bytes(StepCA(tmp_path / "other").root_pem)
    assert ca.step("certificate", "verify", str(tls_crt), "--roots", str(other), check=False).returncode != 0
    assert subprocess.run(["openssl", "verify", "-CAfile", str(other), "-untrusted", str(intermediates),
                           str(tls_crt)], capture_output=True).returncode != 0


def test_every_name_type_and_key_type(client, provisioner):
    for spec in (KeySpec(ECDSA, 384), KeySpec(RSA, 2048), KeySpec("Ed25519")):
        _, csr = csr_for("names.example.test", common_name="names.example.test", key_spec=spec,
                         ip_addresses=("127.0.0.1", "::1"), uris=("spiffe://example.test/ns/default/sa/web",),
                         email_addresses=("ops@example.test",))
        leaf = client.sign(provisioner, csr, not_after=dt.timedelta(hours=1)).leaf
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "::1"]
        assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["spiffe://example.test/ns/default/sa/web"]
        assert san.get_values_for_type(x509.RFC822Name) == ["ops@example.test"]


def test_second_signing_gives_a_new_serial(client, provisioner):
    _, csr = csr_for(*SEED_003_NAMES)
    first = client.sign(provisioner, csr, not_after=DAY).leaf
    second = client.sign(provisioner, csr, not_after=DAY).leaf
    assert first.serial_number != second.serial_number
    assert first.public_key() == second.public_key()


def test_a_chain_for_another_key_is_not_accepted(ca, client, provisioner):
    """The client checks what the CA returns: a chain is only taken for the CSR's own key."""
    _, csr = csr_for("mine.example.test")
    answer = {"certChain": [certificates_pem([c]).decode() for c in client.sign(provisioner, csr).chain]}
    _, other = csr_for("mine.example.test")
    with pytest.raises(StepCAError, match="another key"):
        client._verified_chain(answer, other)
    # and a chain that does not end in caBundle's root is not accepted either
    stranger_key = generate_key(KeySpec(ECDSA, 256))
    stranger = issue(CertificateTemplate(subject=Subject(common_name="stranger"), is_ca=True, duration=DAY),
                     stranger_key, None, dt.datetime.now(dt.timezone.utc)).certificate
    leaf = issue(CertificateTemplate(dns_names=("mine.example.test",), duration=DAY), stranger_key,
                 CASigner(stranger, stranger_key), dt.datetime.now(dt.timezone.utc)).certificate
    stranger_csr = build_csr(CertificateTemplate(dns_names=("mine.example.test",)), stranger_key)
    with pytest.raises(StepCAError, match="not a root in caBundle"):
        client._verified_chain({"certChain": [certificates_pem([leaf]).decode()]}, stranger_csr)


def test_shared_client_reuses_its_connection(ca):
    clients = StepCAClients()
    shared = clients.get(ca.url, ca.root_pem)
    assert clients.get(ca.url + "/", ca.root_pem) is shared
    assert clients.get(ca.url, ca.root_pem + b"\n") is not shared  # another bundle, another client
    provisioner = shared.check(ca.provisioner, ca.kid, ca.password)
    for i in range(10):
        shared.sign(provisioner, csr_for(f"reuse-{i}.example.test")[1], not_after=DAY)
    assert shared.requests_sent == 2 + 10  # /health, /provisioners, 10 x /1.0/sign
    assert shared.connections_opened == 1
    threads = [threading.Thread(target=shared.sign, args=(provisioner, csr_for(f"t{i}.example.test")[1]))
               for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert shared.requests_sent == 20
    assert shared.connections_opened <= 4  # the pool's bound, however many threads sign at once
    clients.close()


# ------------------------------------------------------------------ secrets


def test_no_secret_in_reprs_messages_or_logs(ca, caplog, tmp_path):
    caplog.set_level(logging.DEBUG)
    private_jwk = json.loads(ca.decrypted_provisioner_key().read_text())
    secrets = [ca.password.decode(), private_jwk["d"]]
    client = StepCAClient(ca.url, ca.root_pem)
    other_root = StepCA(tmp_path / "x").root_pem
    provisioner = client.check(ca.provisioner, ca.kid, ca.password)
    seen = [repr(client), repr(provisioner), str(provisioner), repr(client.__dict__)]
    signed = client.sign(provisioner, csr_for("quiet.example.test")[1], not_after=DAY)
    seen.append(repr(signed))
    for call in (lambda: client.check(ca.provisioner, ca.kid, ca.password + b"!"),
                 lambda: client.sign(provisioner, csr_for("forbidden.invalid")[1]),
                 lambda: StepCAClient(ca.url, other_root).check(ca.provisioner, ca.kid, ca.password)):
        with pytest.raises(StepCAError) as caught:
            call()
        error = caught.value
        seen += [str(error), repr(error), error.message, repr(error.__cause__), repr(error.__context__)]
    seen += [record.getMessage() for record in caplog.records]
    text = "\n".join(seen)
    for secret in secrets:
        assert secret not in text
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(provisioner)


# ------------------------------------------------------------------ rate


@pytest.mark.slow
def test_throughput_against_the_cas_own_rate(ca):
    ours = stepca_bench.certmint_rate(ca, stepca_bench.N)
    theirs = stepca_bench.cli_rate(ca, stepca_bench.N)
    print(f"\nstep-ca, {stepca_bench.N} ECDSA P-256 certificates, {stepca_bench.CONCURRENCY} at a time: "
          f"certmint client {ours['per_second']}/s ({ours['seconds']} s, {ours['connections']} connections), "
          f"step CLI {theirs['per_second']}/s ({theirs['seconds']} s); step-ca CPU per certificate "
          f"{ours['ca_cpu_ms_per_certificate']} ms (certmint) / {theirs['ca_cpu_ms_per_certificate']} ms (CLI)")
    assert ours["unique_serials"] == theirs["unique_serials"] == stepca_bench.N
    assert ours["connections"] <= stepca_bench.CONCURRENCY
    # Both sides make a key, a CSR and the same POST; the CLI also starts a process per
    # certificate. certmint's client must never be the slower side by much.
    assert ours["per_second"] >= 0.5 * theirs["per_second"]


# ------------------------------------------------------------------ the issuer glue the controller calls


def step_spec_of(ca: StepCA) -> StepSpec:
    parsed = parse_issuer_spec({"step": ca.issuer_spec(password_secret="step-provisioner", password_key="password")})
    assert parsed.step is not None
    return parsed.step


def password_secret(ca: StepCA, key: str = "password") -> SecretState:
    return SecretState("step-provisioner", {key: ca.password}, type="Opaque")


def test_step_issuers_ready_check(ca):
    issuers = StepIssuers()
    spec = step_spec_of(ca)
    missing = issuers.check("a", spec, None, "ns")
    assert (missing.ready, missing.reason) == (False, "SecretNotFound")
    assert "ns/step-provisioner does not exist" in missing.message
    no_key = issuers.check("a", spec, password_secret(ca, key="other"), "ns")
    assert (no_key.ready, no_key.reason) == (False, "SecretNotFound") and "has no key password" in no_key.message
    wrong = issuers.check("a", spec, SecretState("p", {"password": b"nope"}), "ns")
    assert (wrong.ready, wrong.reason) == (False, WRONG_PASSWORD)
    assert issuers.signer("a") is None
    ready = issuers.check("a", spec, password_secret(ca), "ns")
    assert (ready.ready, ready.reason, ready.signer) == (True, "Verified", None)
    assert issuers.signer("a", spec) is not None
    assert issuers.signer("a", dataclasses.replace(spec, provisioner_kid="x")) is None  # the spec changed since
    # a second issuer on the same CA and bundle shares the client
    issuers.check("b", spec, password_secret(ca), "other")
    assert issuers.signer("a").client is issuers.signer("b").client and len(issuers.clients) == 1
    issuers.forget("a")
    assert issuers.signer("a") is None and len(issuers.clients) == 1
    issuers.forget("b")
    assert len(issuers.clients) == 0


def test_step_issuers_issue_seed_003_certificate(ca):
    issuers = StepIssuers()
    assert issuers.check("iss", step_spec_of(ca), password_secret(ca), "default").ready
    cert_spec = parse_certificate_spec({
        "secretName": "my-service-tls", "duration": "24h", "renewBefore": "8h",
        "issuerRef": {"name": "step-ca-issuer", "kind": "ClusterIssuer"},
        "dnsNames": list(SEED_003_NAMES),
        "privateKey": {"algorithm": "ECDSA", "rotationPolicy": "Never"},
    })
    now = dt.datetime.now(dt.timezone.utc)
    issued = issuers.issue("iss", cert_spec, None, now)
    leaf = issued.certificate
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == DAY  # exactly, as certmint's own issuers
    assert abs(leaf.not_valid_before_utc - (now - dt.timedelta(minutes=1))) < dt.timedelta(seconds=2)
    assert x509.load_pem_x509_certificates(issued.tls_crt)[0] == leaf
    assert len(x509.load_pem_x509_certificates(issued.tls_crt)) == 2  # leaf + intermediate
    assert issued.ca_crt == ca.root_pem
    # rotationPolicy Never: the next issuance keeps the key, with a new serial
    previous = SecretState("my-service-tls", {"tls.key": issued.key_pem, "tls.crt": issued.tls_crt})
    again = issuers.issue("iss", cert_spec, previous, dt.datetime.now(dt.timezone.utc))
    assert again.key_pem == issued.key_pem and again.certificate.serial_number != leaf.serial_number

    forbidden = parse_certificate_spec({"secretName": "x", "duration": "24h", "issuerRef": {"name": "s"},
                                        "dnsNames": ["forbidden.invalid"]})
    with pytest.raises(IssuanceError) as caught:
        issuers.issue("iss", forbidden, None, now)
    assert caught.value.reason == REFUSED and "not allowed" in caught.value.message
    too_long = parse_certificate_spec({"secretName": "x", "issuerRef": {"name": "s"}, "dnsNames": ["a.example.test"]})
    with pytest.raises(IssuanceError) as caught:  # certmint's default duration, 2160h, is over the CA's 24h
        issuers.issue("iss", too_long, None, now)
    assert caught.value.reason == REFUSED and "maximum certificate duration" in caught.value.message
    with pytest.raises(IssuanceError, match="has not passed its Ready check"):
        issuers.issue("unknown", cert_spec, None, now)


def test_what_the_ca_decides_is_not_a_mismatch(ca):
    """step-ca writes its own subject and usages; compared through as_decided_by_ca, seed 003's
    Certificate (no commonName, default usages) matches what the CA issued, and a change of
    what the request does carry (a SAN, the key type) still shows."""
    issuers = StepIssuers()
    assert issuers.check("iss", step_spec_of(ca), password_secret(ca), "default").ready
    body = {"secretName": "s", "duration": "24h", "issuerRef": {"name": "x"}, "dnsNames": list(SEED_003_NAMES),
            "privateKey": {"algorithm": "ECDSA"}, "subject": {"organizations": ["FlexStack"]}}
    spec = parse_certificate_spec(body)
    issued = describe(issuers.issue("iss", spec, None, dt.datetime.now(dt.timezone.utc)).certificate)
    assert template_mismatches(spec.template, issued)  # compared naively, it would be re-issued forever
    assert template_mismatches(as_decided_by_ca(spec.template, issued), issued) == []
    renamed = parse_certificate_spec({**body, "dnsNames": [*SEED_003_NAMES, "extra.example.test"]})
    (mismatch,) = template_mismatches(as_decided_by_ca(renamed.template, issued), issued)
    assert mismatch.startswith("dnsNames differ") and "extra.example.test" in mismatch
    rsa = parse_certificate_spec({**body, "privateKey": {"algorithm": "RSA"}})
    assert any("privateKey.algorithm" in m for m in template_mismatches(as_decided_by_ca(rsa.template, issued), issued))


def test_the_ca_listens_on_loopback_only(ca):
    """Every listening socket of the step-ca process is bound to 127.0.0.1 (from /proc)."""
    assert ca.process is not None
    pid = ca.process.pid
    inodes = {os.readlink(f"/proc/{pid}/fd/{fd}")[len("socket:["):-1] for fd in os.listdir(f"/proc/{pid}/fd")
              if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:[")}
    listening = []
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes:  # 0A: LISTEN
                address, port = local.split(":")
                listening.append((table, address, int(port, 16)))
    assert listening == [("tcp", "0100007F", ca.port)]  # 127.0.0.1, little-endian hex
