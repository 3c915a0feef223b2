"""The re-issuance decision, check by check, with real certificates and no cluster."""
from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from certmint.issuance import issue_certificate, issued_secret, maintained_secret, secret_differs
from certmint.issuers import issuer_state
from certmint.model import parse_certificate_spec, parse_issuer_spec
from certmint.pki import describe, encode_private_key, generate_key, parse_certificates
from certmint.pki.types import KeySpec
from certmint.policy import TRIGGERS, Backoff, FailureRecord, Issue, IssuerState, Observed, UpToDate, Wait, decide
from certmint.policy.types import CERTIFICATE_NAME, ISSUER_NAME, TLS_CERT, TLS_KEY, SecretState

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.timezone.utc)
SELF_SIGNED = issuer_state(parse_issuer_spec({"selfSigned": {}}), None, NOW)
SPEC = {"secretName": "web-tls", "commonName": "web", "dnsNames": ["web.example.com"], "duration": "24h",
        "privateKey": {"algorithm": "ECDSA", "size": 256}, "issuerRef": {"name": "selfsigned"}}


def observe(secret: SecretState | None, spec: dict | None = None, at: dt.datetime = NOW, **kw) -> Observed:
    return Observed("web", kw.pop("generation", 1), parse_certificate_spec(spec or SPEC), secret,
                    kw.pop("issuer", SELF_SIGNED), at, **kw)


def issued(spec: dict | None = None, at: dt.datetime = NOW, renew: str | None = None) -> SecretState:
    parsed = parse_certificate_spec(spec or SPEC)
    material = issue_certificate(parsed, SELF_SIGNED, None, at)
    return issued_secret(parsed.secret_name, "web", parsed, material, 1, renew, None)


def with_data(secret: SecretState, **changes: bytes | None) -> SecretState:
    data = dict(secret.data)
    for k, v in changes.items():
        key = k.replace("_", ".")
        if v is None:
            data.pop(key, None)
        else:
            data[key] = v
    return dataclasses.replace(secret, data=data)


def reason(decision) -> str:
    assert isinstance(decision, (Issue, Wait)), decision
    return decision.reason


def test_fresh_certificate_is_up_to_date_until_two_thirds_of_its_life():
    d = decide(observe(issued()))
    assert isinstance(d, UpToDate)
    assert d.revision == 1
    lifetime = d.not_after - d.not_before
    assert d.renewal_time == d.not_after - lifetime / 3


def test_missing_secret_is_issued():
    assert reason(decide(observe(None))) == "DoesNotExist"


@pytest.mark.parametrize("missing", ["tls_crt", "tls_key"])
def test_missing_data_is_issued(missing):
    assert reason(decide(observe(with_data(issued(), **{missing: None})))) == "MissingData"


def test_garbage_certificate_and_key_are_reported_as_such():
    assert reason(decide(observe(with_data(issued(), tls_crt=b"junk")))) == "InvalidCertificate"
    assert reason(decide(observe(with_data(issued(), tls_key=b"junk")))) == "InvalidKeyPair"


def test_key_that_does_not_match_the_certificate():
    other = encode_private_key(generate_key(KeySpec("ECDSA", 256)), "PKCS1")
    assert reason(decide(observe(with_data(issued(), tls_key=other)))) == "InvalidKeyPair"


def test_key_algorithm_and_encoding_changes():
    rsa = {**SPEC, "privateKey": {"algorithm": "RSA", "size": 2048}}
    assert reason(decide(observe(issued(), rsa))) == "SecretMismatch"
    pkcs8 = {**SPEC, "privateKey": {"algorithm": "ECDSA", "size": 256, "encoding": "PKCS8"}}
    assert reason(decide(observe(issued(), pkcs8))) == "SecretMismatch"


def test_issuer_change_is_noticed_from_the_annotations():
    moved = {**SPEC, "issuerRef": {"name": "other"}}
    assert reason(decide(observe(issued(), moved))) == "IncorrectIssuer"
    tampered = issued()
    tampered = dataclasses.replace(tampered, annotations={**tampered.annotations, ISSUER_NAME: "x"})
    assert reason(decide(observe(tampered))) == "IncorrectIssuer"


@pytest.mark.parametrize("change", [
    {"dnsNames": ["web.example.com", "api.example.com"]},
    {"commonName": "other"},
    {"usages": ["digital signature", "key encipherment", "server auth"]},
    {"isCA": True},
    {"duration": "48h"},
    {"ipAddresses": ["10.0.0.1"]},
    {"subject": {"organizations": ["Example"]}},
])
def test_spec_changes_request_a_new_certificate(change):
    d = decide(observe(issued(), {**SPEC, **change}))
    assert reason(d) == "RequestChanged"


def test_manual_renewal_runs_once_per_annotation_value():
    assert reason(decide(observe(issued(), renew_request="1"))) == "ManuallyTriggered"
    assert isinstance(decide(observe(issued(renew="1"), renew_request="1")), UpToDate)
    assert reason(decide(observe(issued(renew="1"), renew_request="2"))) == "ManuallyTriggered"


def test_renewal_window_and_expiry():
    secret = issued()
    assert reason(decide(observe(secret, at=NOW + dt.timedelta(hours=17)))) == "Renewing"
    assert reason(decide(observe(secret, at=NOW + dt.timedelta(hours=25)))) == "Expired"
    assert isinstance(decide(observe(secret, at=NOW + dt.timedelta(hours=15))), UpToDate)


def test_renew_before_sets_the_window():
    spec = {**SPEC, "duration": "1h", "renewBefore": "58m"}
    secret = issued(spec)
    d = decide(observe(secret, spec))
    assert isinstance(d, UpToDate)
    assert d.renewal_time == d.not_after - dt.timedelta(minutes=58) == NOW + dt.timedelta(minutes=1)


@pytest.mark.parametrize("window", [{"renewBefore": "59m50s"}, {"renewBeforePercentage": 99}])
def test_a_window_within_the_backdate_does_not_reissue_in_a_loop(window):
    """notBefore is a minute in the past, so renewBefore 59m50s of a 1h certificate would fall before
    its issue: the renewal comes ten seconds after issue instead of at once, again and again."""
    spec = {**SPEC, "duration": "1h", **window}
    d = decide(observe(issued(spec), spec))
    assert isinstance(d, UpToDate)
    assert d.renewal_time == NOW + dt.timedelta(seconds=10)
    assert reason(decide(observe(issued(spec), spec, at=d.renewal_time))) == "Renewing"


def test_secret_of_another_certificate_is_never_taken_over():
    secret = issued()
    foreign = dataclasses.replace(secret, labels={CERTIFICATE_NAME: "someone-else"})
    d = decide(observe(foreign))
    assert isinstance(d, Wait) and d.reason == "SecretMismatch" and d.retry_at is not None


def test_issuer_not_ready_waits_for_an_event_not_a_timer():
    broken = IssuerState(False, "SecretNotFound", "CA Secret ca does not exist")
    d = decide(observe(None, issuer=broken))
    assert isinstance(d, Wait) and d.reason == "IssuerNotReady" and d.retry_at is None
    # an up-to-date certificate stays up to date while its issuer is broken
    assert isinstance(decide(observe(issued(), issuer=broken)), UpToDate)


def test_failed_issuances_back_off_exponentially_and_reset_on_spec_change():
    backoff = Backoff(dt.timedelta(seconds=10), dt.timedelta(hours=1))
    assert [backoff.delay(n).total_seconds() for n in (1, 2, 3, 4, 12, 40)] == [10, 20, 40, 80, 3600, 3600]
    failure = FailureRecord(attempts=3, last_failure=NOW - dt.timedelta(seconds=5), generation=1)
    d = decide(observe(None, failure=failure), backoff)
    assert isinstance(d, Wait) and d.reason == "Backoff"
    assert d.retry_at == failure.last_failure + dt.timedelta(seconds=40)
    assert reason(decide(observe(None, failure=failure, at=d.retry_at), backoff)) == "DoesNotExist"
    assert reason(decide(observe(None, failure=failure, generation=2), backoff)) == "DoesNotExist"


def test_backoff_resets_when_the_issuer_becomes_ready_after_the_failure():
    failure = FailureRecord(attempts=5, last_failure=NOW - dt.timedelta(seconds=5), generation=1)
    recovered = dataclasses.replace(SELF_SIGNED, ready_since=NOW - dt.timedelta(seconds=1))
    assert reason(decide(observe(None, failure=failure, issuer=recovered))) == "DoesNotExist"


def test_trigger_order_is_the_documented_priority():
    assert [t.__name__ for t in TRIGGERS] == [
        "not_revoked", "key_pair_matches", "private_key_matches_spec", "issuer_annotations_match", "certificate_matches_spec",
        "manual_renewal", "not_expired", "signed_by_current_ca", "not_due_for_renewal"]


def test_key_is_reused_only_with_rotation_policy_never():
    old = issued()
    never = {**SPEC, "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Never"}}
    again = issue_certificate(parse_certificate_spec(never), SELF_SIGNED, old, NOW)
    assert again.key_pem == old.data[TLS_KEY]
    fresh = issue_certificate(parse_certificate_spec(SPEC), SELF_SIGNED, old, NOW)
    assert fresh.key_pem != old.data[TLS_KEY]


# --- upgrades: what changed in how certificates are built must not re-issue them all at once ---------


def legacy(spec: dict, at: dt.datetime = NOW, **template_changes) -> SecretState:
    """A Secret as an earlier certmint wrote it: the same spec, with the template changed as it built it then."""
    parsed = parse_certificate_spec(spec)
    old = dataclasses.replace(parsed, template=dataclasses.replace(parsed.template, **template_changes))
    return issued_secret(parsed.secret_name, "web", parsed, issue_certificate(old, SELF_SIGNED, None, at), 1, None, None)


def lifetime_of(secret: SecretState) -> dt.timedelta:
    d = decide(observe(secret))
    assert isinstance(d, UpToDate), d
    return d.not_after - d.not_before


def test_a_new_certificate_lives_exactly_its_duration():
    assert lifetime_of(issued()) == dt.timedelta(hours=24)


def test_a_certificate_from_before_the_exact_lifetime_is_kept_until_its_renewal():
    """Earlier releases made certificates a minute longer than asked: accepted as they are, renewed on schedule."""
    old = legacy(SPEC, duration=dt.timedelta(hours=24, minutes=1))
    assert lifetime_of(old) == dt.timedelta(hours=24, minutes=1)
    d = decide(observe(old))
    assert d.renewal_time == d.not_after - (d.not_after - d.not_before) / 3


@pytest.mark.parametrize("off_by", [dt.timedelta(seconds=1), dt.timedelta(seconds=-1), dt.timedelta(seconds=59),
                                    dt.timedelta(seconds=61), dt.timedelta(minutes=2)])
def test_any_other_lifetime_is_a_changed_request(off_by):
    d = decide(observe(legacy(SPEC, duration=dt.timedelta(hours=24) + off_by)))
    assert reason(d) == "RequestChanged" and "duration differs" in d.message


def test_a_certificate_clamped_to_its_ca_is_not_a_changed_request():
    ca_spec = {"secretName": "ca", "commonName": "CA", "isCA": True, "duration": "30h",
               "privateKey": {"algorithm": "ECDSA"}, "issuerRef": {"name": "selfsigned"}}
    ca = issue_certificate(parse_certificate_spec(ca_spec), SELF_SIGNED, None, NOW)
    issuer = issuer_state(parse_issuer_spec({"ca": {"secretName": "ca"}}),
                          SecretState("ca", {TLS_CERT: ca.tls_crt, TLS_KEY: ca.key_pem, "ca.crt": ca.ca_crt}), NOW)
    spec = {**SPEC, "duration": "48h"}
    parsed = parse_certificate_spec(spec)
    material = issue_certificate(parsed, issuer, None, NOW + dt.timedelta(hours=1))
    assert material.clamped
    assert material.certificate.not_valid_after_utc == ca.certificate.not_valid_after_utc
    secret = issued_secret("web-tls", "web", parsed, material, 1, None, None)
    d = decide(observe(secret, spec, at=NOW + dt.timedelta(hours=2), issuer=issuer))
    assert isinstance(d, UpToDate)
    lifetime = d.not_after - d.not_before
    assert lifetime == dt.timedelta(hours=29)  # the CA's 30h from NOW, less this certificate's later start
    assert d.renewal_time == d.not_after - lifetime / 3


@pytest.mark.parametrize("algorithm,is_ca", [("ECDSA", False), ("ECDSA", True), ("Ed25519", False),
                                             ("Ed25519", True), ("RSA", True)])
def test_an_old_default_usage_set_is_kept_until_renewal(algorithm, is_ca):
    """Default usages once included key encipherment for every key; ECDSA, Ed25519 and RSA CA certificates
    made that way are not re-issued for it (they get digital signature alone at their next renewal)."""
    spec = {**SPEC, "privateKey": {"algorithm": algorithm}, "isCA": is_ca}
    old_usages = ("digital signature", "key encipherment", *(("cert sign",) if is_ca else ()))
    old = legacy(spec, usages=old_usages)
    assert isinstance(decide(observe(old, spec)), UpToDate)
    renewed = issue_certificate(parse_certificate_spec(spec), SELF_SIGNED, old, NOW)
    assert describe(renewed.certificate).usages == tuple(sorted({"digital signature", *(("cert sign",) if is_ca else ())}))


def test_explicit_usages_are_still_compared_exactly():
    spec = {**SPEC, "usages": ["digital signature"]}
    old = legacy(spec, usages=("digital signature", "key encipherment"))
    d = decide(observe(old, spec))
    assert reason(d) == "RequestChanged" and "usages differ" in d.message


def test_an_old_secret_without_subject_annotations_is_updated_not_reissued():
    """The subject-* annotations are new: a Secret without them is brought up to date by a metadata
    write (as cert-manager's post-issuance checks do), and the certificate is kept."""
    spec = {**SPEC, "subject": {"organizations": ["Example"], "countries": ["DE"], "serialNumber": "42"}}
    current = issued(spec)
    old = dataclasses.replace(current, annotations={k: v for k, v in current.annotations.items()
                                                    if "/subject-" not in k})
    assert isinstance(decide(observe(old, spec)), UpToDate)
    parsed = parse_certificate_spec(spec)
    wanted = maintained_secret(old, "web", parsed, None)
    assert secret_differs(old, wanted)
    assert wanted.data == old.data
    assert {k: v for k, v in wanted.annotations.items() if "/subject-" in k} == {
        "certmint.io/subject-organizations": "Example", "certmint.io/subject-countries": "DE",
        "certmint.io/subject-serialnumber": "42"}
    assert not secret_differs(current, maintained_secret(current, "web", parsed, None))


def test_a_revoked_certificate_is_reissued_at_once_and_only_that_one():
    secret = issued()
    serial = parse_certificates(secret.data[TLS_CERT])[0].serial_number
    said = "CertificateRevocation agent-01 (keyCompromise)"
    decision = decide(observe(secret, revoked={serial: said}))
    assert reason(decision) == "Revoked" and said in decision.message
    assert isinstance(decide(observe(secret, revoked={serial + 1: said})), UpToDate)


def test_a_revoked_certificates_key_is_never_reused_even_with_rotation_policy_never():
    """The controller passes no previous Secret for a Revoked trigger; the issuance then has no key to reuse."""
    never = {**SPEC, "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Never"}}
    again = issue_certificate(parse_certificate_spec(never), SELF_SIGNED, None, NOW)
    assert again.key_pem != issued(never).data[TLS_KEY]
