"""The re-issuance decision, check by check, with real certificates and no cluster."""
from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from certmint.issuance import issue_certificate, issued_secret
from certmint.issuers import issuer_state
from certmint.model import parse_certificate_spec, parse_issuer_spec
from certmint.pki import encode_private_key, generate_key
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
    spec = {**SPEC, "duration": "1h", "renewBefore": "59m50s"}
    secret = issued(spec)
    d = decide(observe(secret, spec))
    assert isinstance(d, UpToDate)
    assert d.renewal_time == d.not_after - dt.timedelta(minutes=59, seconds=50)


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
        "key_pair_matches", "private_key_matches_spec", "issuer_annotations_match", "certificate_matches_spec",
        "manual_renewal", "not_expired", "not_due_for_renewal"]


def test_key_is_reused_only_with_rotation_policy_never():
    old = issued()
    never = {**SPEC, "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Never"}}
    again = issue_certificate(parse_certificate_spec(never), SELF_SIGNED, old, NOW)
    assert again.key_pem == old.data[TLS_KEY]
    fresh = issue_certificate(parse_certificate_spec(SPEC), SELF_SIGNED, old, NOW)
    assert fresh.key_pem != old.data[TLS_KEY]
