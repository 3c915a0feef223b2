"""CRLs built by certmint.pki.crl: RFC 5280 fields, round trip, and what real tools make of them
(OpenSSL's verifier with -crl_check, pkilint and zlint), for every CA key type."""
from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from certmint.pki.certificates import certificates_pem
from certmint.pki.crl import (
    REASONS,
    ParsedCRL,
    RevokedCertificate,
    build_crl,
    check_can_sign_crl,
    crl_der,
    crl_pem,
    parse_crl,
    signed_by,
    without_expired,
)
from certmint.pki.keys import encode_private_key, generate_key
from certmint.pki.signing import CASigner, issue, random_serial
from certmint.pki.types import ECDSA, ED25519, PKCS8, RSA, CertificateTemplate, KeySpec, PKIError, Subject
from pkilint_zlint import lint_crl

NOW = dt.datetime(2026, 6, 1, 12, 0, 0, tzinfo=dt.timezone.utc)
DAY = dt.timedelta(days=1)
CA_USAGES = ("cert sign", "crl sign", "digital signature")
KEY_SPECS = {RSA: KeySpec(RSA, 2048), ECDSA: KeySpec(ECDSA, 256), ED25519: KeySpec(ED25519, None, PKCS8)}
LINT_CRL = Path(sys.executable).parent / "lint_crl"


def make_ca(algorithm: str = ECDSA, name: str = "Test CA", usages=CA_USAGES, now: dt.datetime = NOW,
            parent: CASigner | None = None) -> CASigner:
    key = generate_key(KEY_SPECS[algorithm])
    template = CertificateTemplate(subject=Subject(common_name=name), is_ca=True, usages=usages,
                                   duration=dt.timedelta(days=365), key=KEY_SPECS[algorithm])
    certificate = issue(template, key, parent, now).certificate
    chain = () if parent is None else (parent.certificate, *parent.chain)
    return CASigner(certificate, key, chain)


def make_leaf(ca: CASigner, name: str, now: dt.datetime = NOW):
    key = generate_key(KeySpec(ECDSA, 256))
    template = CertificateTemplate(subject=Subject(common_name=name), dns_names=(f"{name}.example.com",),
                                   usages=("digital signature", "client auth"), key=KeySpec(ECDSA, 256))
    return issue(template, key, ca, now).certificate, key


def entry(serial: int, reason: str = "keyCompromise", revoked_at: dt.datetime = NOW, not_after=None):
    return RevokedCertificate(serial, revoked_at, reason, not_after)


@pytest.fixture(scope="module", params=sorted(KEY_SPECS))
def ca(request) -> CASigner:
    return make_ca(request.param)


# ------------------------------------------------------------------ fields and round trip


def test_fields_of_a_signed_crl(ca):
    entries = [entry(0x1234, "keyCompromise"), entry(0x42, "unspecified"), entry(7, "certificateHold")]
    crl = build_crl(ca, entries, number=17, this_update=NOW, next_update=NOW + DAY)
    assert crl.is_signature_valid(ca.certificate.public_key())
    assert crl.issuer == ca.certificate.subject
    assert crl.last_update_utc == NOW and crl.next_update_utc == NOW + DAY
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 17
    aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    ski = ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert not aki.critical and aki.value.key_identifier == ski.digest
    # v2 (the version field is present and 1): the DER's tbsCertList starts with INTEGER 1
    tbs = crl.tbs_certlist_bytes
    assert b"\x02\x01\x01" in tbs[:8]
    # entries in ascending serial order; the unspecified reason is written as no extension
    assert [r.serial_number for r in crl] == [7, 0x42, 0x1234]
    by_serial = {r.serial_number: r for r in crl}
    assert len(by_serial[0x42].extensions) == 0
    reason = by_serial[0x1234].extensions.get_extension_for_class(x509.CRLReason)
    assert reason.value.reason == x509.ReasonFlags.key_compromise and not reason.critical
    assert by_serial[7].extensions.get_extension_for_class(x509.CRLReason).value.reason \
        == x509.ReasonFlags.certificate_hold


def test_signature_algorithm_follows_the_key(ca):
    crl = build_crl(ca, [], 1, NOW, NOW + DAY)
    if isinstance(ca.key, type(generate_key(KEY_SPECS[ED25519]))):
        assert crl.signature_hash_algorithm is None
    else:
        assert isinstance(crl.signature_hash_algorithm, hashes.SHA256)


def test_parse_returns_what_was_built(ca):
    entries = [entry(random_serial(), reason, NOW - dt.timedelta(minutes=i)) for i, reason in enumerate(REASONS)]
    crl = build_crl(ca, entries, number=2**70, this_update=NOW, next_update=NOW + DAY)
    for data in (crl_pem(crl), crl_der(crl)):
        parsed = parse_crl(data, issuer=ca.certificate)
        assert parsed == ParsedCRL(
            number=2**70, issuer=ca.certificate.subject,
            authority_key_identifier=ca.certificate.extensions.get_extension_for_class(
                x509.SubjectKeyIdentifier).value.digest,
            this_update=NOW, next_update=NOW + DAY, entries=tuple(sorted(entries, key=lambda e: e.serial)))
        assert parsed.serials() == {e.serial for e in entries}
        assert signed_by(parsed, ca)


def test_parse_checks_the_issuer():
    ca, other = make_ca(ECDSA), make_ca(ECDSA)  # same name, another key
    pem = crl_pem(build_crl(ca, [entry(5)], 1, NOW, NOW + DAY))
    with pytest.raises(PKIError, match="does not verify"):
        parse_crl(pem, issuer=other.certificate)
    with pytest.raises(PKIError, match="another name"):
        parse_crl(pem, issuer=make_ca(ECDSA, name="Another CA").certificate)
    assert not signed_by(parse_crl(pem), other)  # a rotated CA key needs a new CRL
    with pytest.raises(PKIError, match="not a valid PEM or DER CRL"):
        parse_crl(b"-----BEGIN X509 CRL-----\nnot base64\n-----END X509 CRL-----\n")
    with pytest.raises(PKIError, match="not a valid PEM or DER CRL"):
        parse_crl(b"\x30\x03\x02\x01\x01")


def test_a_crl_without_a_number_is_not_ours():
    ca = make_ca(ECDSA)
    crl = (x509.CertificateRevocationListBuilder().issuer_name(ca.certificate.subject)
           .last_update(NOW).next_update(NOW + DAY).sign(ca.key, hashes.SHA256()))
    with pytest.raises(PKIError, match="no CRL Number"):
        parse_crl(crl.public_bytes(serialization.Encoding.PEM))


# ------------------------------------------------------------------ refusals


def test_a_ca_without_crl_sign_cannot_sign_a_crl():
    ca = make_ca(ECDSA, usages=("cert sign", "digital signature"))
    with pytest.raises(PKIError, match="lacks cRLSign") as raised:
        build_crl(ca, [], 1, NOW, NOW + DAY)
    assert "PRIVATE KEY" not in str(raised.value)
    check_can_sign_crl(make_ca(ECDSA).certificate)  # with crl sign: fine


@pytest.mark.parametrize("kwargs, message", [
    ({"number": -1}, "CRL number"),
    ({"number": 2**160}, "CRL number"),
    ({"next_update": NOW}, "nextUpdate must come after thisUpdate"),
    ({"this_update": NOW.replace(tzinfo=None)}, "timezone-aware"),
])
def test_bad_crl_parameters(kwargs, message):
    args = {"entries": [], "number": 1, "this_update": NOW, "next_update": NOW + DAY, **kwargs}
    with pytest.raises(PKIError, match=message):
        build_crl(make_ca(ECDSA), **args)


def test_duplicate_serials_are_refused():
    with pytest.raises(PKIError, match="listed twice"):
        build_crl(make_ca(ECDSA), [entry(9), entry(9, "superseded")], 1, NOW, NOW + DAY)


@pytest.mark.parametrize("kwargs, message", [
    ({"serial": 0}, "positive"),
    ({"serial": 2**159}, "20 octets"),
    ({"reason": "removeFromCRL"}, "unknown revocation reason"),
    ({"reason": "KeyCompromise"}, "unknown revocation reason"),
    ({"revoked_at": NOW.replace(tzinfo=None)}, "timezone-aware"),
])
def test_bad_entries(kwargs, message):
    args = {"serial": 1, "revoked_at": NOW, "reason": "keyCompromise", **kwargs}
    with pytest.raises(PKIError, match=message):
        RevokedCertificate(**args)


# ------------------------------------------------------------------ expiry


def test_entries_leave_after_one_crl_issued_beyond_their_expiry():
    expired = entry(1, not_after=NOW - DAY)
    expiring = entry(2, not_after=NOW + dt.timedelta(hours=1))
    unknown = entry(3, not_after=None)
    entries = [expired, expiring, unknown]
    # nothing published yet: the expired entry must first appear on one CRL
    assert without_expired(entries, None) == (expired, expiring, unknown)
    assert without_expired(entries, NOW) == (expiring, unknown)
    assert without_expired(entries, NOW + dt.timedelta(hours=2)) == (unknown,)


# ------------------------------------------------------------------ real verifiers


def openssl(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True, timeout=60, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"openssl {' '.join(map(str, args))}:\n{result.stdout}{result.stderr}")
    return result


@pytest.mark.parametrize("algorithm", sorted(KEY_SPECS))
def test_openssl_verifies_the_crl_and_rejects_the_revoked_certificate(tmp_path, algorithm):
    # A root, an intermediate that issues the leaves and the CRL: the NetStress shape.
    now = dt.datetime.now(dt.timezone.utc)
    root = make_ca(ECDSA, "Root", now=now)
    ca = make_ca(algorithm, "Agents CA", now=now, parent=root)
    revoked, _ = make_leaf(ca, "agent-01", now)
    valid, _ = make_leaf(ca, "agent-02", now)
    crl = build_crl(ca, [entry(revoked.serial_number, "keyCompromise", now)], 1, now - dt.timedelta(minutes=1),
                    now + DAY)
    files = {
        "root.pem": certificates_pem([root.certificate]),
        "ca.pem": certificates_pem([ca.certificate]),
        "ca.crl": crl_pem(crl),
        "agent-01.pem": certificates_pem([revoked]),
        "agent-02.pem": certificates_pem([valid]),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)

    out = openssl("crl", "-in", tmp_path / "ca.crl", "-CAfile", tmp_path / "ca.pem", "-noout", "-verify", "-text")
    assert "verify OK" in out.stderr + out.stdout
    assert "Key Compromise" in out.stdout and "X509v3 CRL Number" in out.stdout
    assert "X509v3 Authority Key Identifier" in out.stdout and "Version 2" in out.stdout

    base = ["verify", "-CAfile", tmp_path / "root.pem", "-untrusted", tmp_path / "ca.pem",
            "-CRLfile", tmp_path / "ca.crl", "-crl_check"]
    rejected = openssl(*base, tmp_path / "agent-01.pem", check=False)
    assert rejected.returncode != 0
    assert "certificate revoked" in rejected.stdout + rejected.stderr
    accepted = openssl(*base, tmp_path / "agent-02.pem")
    assert "agent-02.pem: OK" in accepted.stdout
    # a CRL the verifier cannot check is not silently ignored: a CRL by another key fails
    forged = build_crl(make_ca(algorithm, "Agents CA", now=now, parent=root), [], 1, now - DAY, now + DAY)
    (tmp_path / "forged.crl").write_bytes(crl_pem(forged))
    failed = openssl("verify", "-CAfile", tmp_path / "root.pem", "-untrusted", tmp_path / "ca.pem",
                     "-CRLfile", tmp_path / "forged.crl", "-crl_check", tmp_path / "agent-02.pem", check=False)
    assert failed.returncode != 0


def pkilint_findings(path: Path) -> list[tuple[str, str]]:
    """pkilint's findings (severity, code) at INFO and above, for an RFC 5280 (PKIX) CRL: stricter
    than the suite's harness, which fails on ERROR only."""
    result = subprocess.run([str(LINT_CRL), "lint", "-t", "CRL", "-p", "PKIX", "-s", "INFO", "-f", "JSON",
                             str(path)], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode in (0, 1) or result.stdout, result.stderr
    return [(finding["severity"], finding["code"])
            for item in json.loads(result.stdout)["results"] for finding in item["finding_descriptions"]]


@pytest.mark.parametrize("algorithm", sorted(KEY_SPECS))
def test_pkilint_and_zlint_find_nothing(tmp_path, algorithm):
    ca = make_ca(algorithm)
    entries = [entry(random_serial(), reason) for reason in REASONS]
    for number, listed in ((1, []), (2, entries)):  # an empty CRL and one with every reason
        path = tmp_path / f"{number}.crl"
        der = crl_der(build_crl(ca, listed, number, NOW, NOW + DAY))
        path.write_bytes(der)
        assert pkilint_findings(path) == []
        assert [str(f) for f in lint_crl(der)] == []  # the suite's harness: pkilint and zlint, ERROR and up


def test_pkilint_would_catch_a_defect(tmp_path):
    """The lint above can fail: a CRL missing the CRL Number and AKI is an ERROR to pkilint."""
    ca = make_ca(ECDSA)
    crl = (x509.CertificateRevocationListBuilder().issuer_name(ca.certificate.subject)
           .last_update(NOW).next_update(NOW + DAY).sign(ca.key, hashes.SHA256()))
    path = tmp_path / "bad.crl"
    path.write_bytes(crl.public_bytes(serialization.Encoding.DER))
    assert ("ERROR", "pkix.crl_number_missing") in pkilint_findings(path)
    assert {"pkix.crl_number_missing", "e_crl_missing_crl_number"} <= {f.code for f in lint_crl(path.read_bytes())}


# ------------------------------------------------------------------ speed


@pytest.mark.parametrize("algorithm", [RSA, ECDSA, ED25519])
def test_ten_thousand_entries_sign_in_under_a_second(algorithm):
    ca = make_ca(algorithm)
    entries = [entry(random_serial(), "keyCompromise", NOW, NOW + DAY) for _ in range(10_000)]
    best = float("inf")
    for _ in range(3):  # best of three: the figure is the code's, not a busy machine's
        started = time.perf_counter()
        crl = build_crl(ca, entries, 1, NOW, NOW + DAY)
        best = min(best, time.perf_counter() - started)
    der = crl_der(crl)
    started = time.perf_counter()
    parsed = parse_crl(der, issuer=ca.certificate)
    parse_time = time.perf_counter() - started
    print(f"\nCRL of 10,000 entries, {algorithm} CA: signed in {best * 1000:.0f} ms, "
          f"parsed and verified in {parse_time * 1000:.0f} ms, {len(der):,} bytes DER, "
          f"{len(crl_pem(crl)):,} bytes PEM")
    assert len(parsed.entries) == 10_000
    assert best < 1.0


def test_key_is_never_in_a_message():
    ca = make_ca(ECDSA, usages=("cert sign",))
    pem = encode_private_key(ca.key, PKCS8).decode()
    with pytest.raises(PKIError) as raised:
        build_crl(ca, [], 1, NOW, NOW + DAY)
    assert pem.splitlines()[1] not in str(raised.value) and "CASigner" not in str(raised.value)
