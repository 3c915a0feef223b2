"""The pure Bundle core: spec parsing, selectors, deterministic building, PKCS#12, and the rotation
rules (which roots a Bundle keeps, when a certificate under a rotated CA may be re-issued)."""
from __future__ import annotations

import datetime as dt
import subprocess

import certifi
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from certmint.tls.testing import TestCA
from certmint.trust import (
    BundleError,
    TargetSpec,
    build_bundle,
    fingerprint,
    parse_bundle_spec,
    selector_matches,
    target_data,
)
from certmint.trust.anchors import (
    TrackedCA,
    from_status,
    rotation_time,
    spread_offset,
    synced,
    to_status,
    track,
    trusted_since,
)

NOW = dt.datetime.now(dt.timezone.utc)


@pytest.fixture(autouse=True)
def _now():
    """NOW is taken when each test starts: the CAs the tests make are valid from a few minutes
    before their own creation, and a NOW from collection time may be long before that."""
    global NOW
    NOW = dt.datetime.now(dt.timezone.utc)
TARGET = TargetSpec("ca.crt")


def pem(ca: TestCA) -> bytes:
    return ca.cert_pem


def test_spec_parses_every_source_kind_and_target():
    spec = parse_bundle_spec({
        "sources": [{"secret": {"name": "s", "key": "ca.crt"}}, {"configMap": {"name": "c", "key": "k"}},
                    {"inLine": "PEM"}, {"issuerRef": {"name": "root"}}, {"useDefaultCAs": True}],
        "target": {"configMap": {"key": "ca.crt"}, "secret": {"key": "ca.pem"},
                   "additionalFormats": {"pkcs12": {"key": "truststore.p12"}}},
        "namespaceSelector": {"matchLabels": {"trust": "yes"},
                              "matchExpressions": [{"key": "env", "operator": "In", "values": ["a", "b"]}]},
    })
    assert [s.kind for s in spec.sources] == ["secret", "configMap", "inLine", "issuerRef", "useDefaultCAs"]
    assert spec.sources[3].issuer_kind == "ClusterIssuer"  # the default kind of an issuerRef
    assert spec.target == TargetSpec("ca.crt", "ca.pem", "truststore.p12")
    assert selector_matches(spec, {"trust": "yes", "env": "a"})
    assert not selector_matches(spec, {"trust": "yes", "env": "c"})
    assert not selector_matches(spec, {"env": "a"})


@pytest.mark.parametrize("spec, words", [
    ({"target": {"configMap": {"key": "k"}}}, "at least one source"),
    ({"sources": [{"inLine": "x", "useDefaultCAs": True}], "target": {"configMap": {"key": "k"}}}, "exactly one"),
    ({"sources": [{"secret": {"name": "s"}}], "target": {"configMap": {"key": "k"}}}, "secret.key"),
    ({"sources": [{"inLine": "x"}]}, "spec.target"),
    ({"sources": [{"inLine": "x"}], "target": {"configMap": {"key": "k"},
                                               "additionalFormats": {"pkcs12": {"key": "k"}}}}, "differ"),
])
def test_invalid_specs_name_the_field(spec, words):
    with pytest.raises(BundleError) as e:
        parse_bundle_spec(spec)
    assert e.value.reason == "InvalidSpec" and words in e.value.message


@pytest.mark.parametrize("op, labels, matches", [
    ("Exists", {"x": "1"}, True), ("Exists", {}, False),
    ("DoesNotExist", {}, True), ("DoesNotExist", {"x": "1"}, False),
    ("NotIn", {"x": "1"}, False), ("NotIn", {"x": "2"}, True), ("NotIn", {}, True),
])
def test_match_expressions(op, labels, matches):
    expr = {"key": "x", "operator": op, **({"values": ["1"]} if op in ("In", "NotIn") else {})}
    spec = parse_bundle_spec({"sources": [{"inLine": "x"}], "target": {"configMap": {"key": "k"}},
                              "namespaceSelector": {"matchExpressions": [expr]}})
    assert selector_matches(spec, labels) is matches


def test_output_is_deduplicated_sorted_and_byte_identical_whatever_the_order():
    a, b, c = TestCA("a root"), TestCA("b root"), TestCA("c root")
    one = build_bundle([("x", pem(c) + pem(a)), ("y", pem(b)), ("z", pem(a))], TARGET, NOW)
    two = build_bundle([("y", pem(b) + pem(c)), ("x", pem(a) + pem(a))], TARGET, NOW)
    assert one.pem == two.pem and one.hash == two.hash
    assert [x.subject.rfc4514_string() for x in one.certificates] == ["CN=a root", "CN=b root", "CN=c root"]
    assert one.pem.count(b"BEGIN CERTIFICATE") == 3
    # a different target layout is a different content, even with the same certificates
    assert build_bundle([("x", pem(a) + pem(b) + pem(c))], TargetSpec("other"), NOW).hash != one.hash


def test_expired_certificates_are_dropped_and_an_empty_bundle_is_an_error():
    live, old = TestCA("live"), TestCA("old", days=1)
    later = NOW + dt.timedelta(days=2)
    built = build_bundle([("x", pem(live) + pem(old))], TARGET, NOW)
    assert len(built.certificates) == 2
    built = build_bundle([("x", pem(TestCA("live2", days=30)) + pem(old))], TARGET, later)
    assert [c.subject.rfc4514_string() for c in built.certificates] == ["CN=live2"]
    with pytest.raises(BundleError) as e:
        build_bundle([("x", pem(old))], TARGET, later)
    assert e.value.reason == "EmptyBundle"


@pytest.mark.parametrize("text", [b"not a certificate", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"])
def test_not_pem_is_a_reason_naming_the_source(text):
    with pytest.raises(BundleError) as e:
        build_bundle([("secret trust/bad", text)], TARGET, NOW)
    assert e.value.reason == "InvalidPEM" and "secret trust/bad" in e.value.message


def test_certifi_default_cas_build():
    with open(certifi.where(), "rb") as f:
        built = build_bundle([("useDefaultCAs", f.read())], TARGET, NOW)
    assert len(built.certificates) > 50


def test_pkcs12_truststore_holds_every_certificate_without_a_password(tmp_path):
    a, b = TestCA("a"), TestCA("b")
    built = build_bundle([("x", pem(a) + pem(b))], TargetSpec("ca.crt", "ca.crt", "truststore.p12"), NOW)
    data, binary, secret = target_data(built, TargetSpec("ca.crt", "ca.crt", "truststore.p12"))
    assert data == {"ca.crt": built.pem.decode()}
    store = binary["truststore.p12"]
    assert secret["ca.crt"] == built.pem and secret["truststore.p12"] == store
    loaded = pkcs12.load_pkcs12(store, None)
    assert {fingerprint(c.certificate) for c in loaded.additional_certs} == set(built.fingerprints)
    path = tmp_path / "t.p12"
    path.write_bytes(store)
    out = subprocess.run(["openssl", "pkcs12", "-in", str(path), "-nokeys", "-passin", "pass:"],
                         capture_output=True, check=True).stdout
    assert out.count(b"BEGIN CERTIFICATE") == 2


# --- rotation ------------------------------------------------------------------------------------

GRACE = dt.timedelta(seconds=30)


def test_a_root_stays_while_in_use_then_for_the_grace_then_goes():
    old, new = TestCA("root"), TestCA("root")  # same name, new key: a rotation
    tracked = synced(track((), [old.cert], NOW, GRACE), NOW)
    assert [t.fingerprint for t in tracked] == [fingerprint(old.cert)] and tracked[0].since == NOW
    # the CA has a new key; certificates still chain to the old one
    t1 = NOW + dt.timedelta(seconds=5)
    tracked = track(tracked, [new.cert, old.cert], t1, GRACE)
    assert {t.fingerprint for t in tracked} == {fingerprint(old.cert), fingerprint(new.cert)}
    assert next(t for t in tracked if t.fingerprint == fingerprint(new.cert)).since is None  # not written yet
    tracked = synced(tracked, t1)
    # the last certificate under the old root was re-issued: kept for the grace period
    t2 = NOW + dt.timedelta(seconds=20)
    tracked = track(tracked, [new.cert], t2, GRACE)
    retiring = next(t for t in tracked if t.fingerprint == fingerprint(old.cert))
    assert retiring.unused_since == t2 and retiring.since == NOW
    assert len(track(tracked, [new.cert], t2 + GRACE - dt.timedelta(seconds=1), GRACE)) == 2
    assert [t.fingerprint for t in track(tracked, [new.cert], t2 + GRACE, GRACE)] == [fingerprint(new.cert)]
    # in use again before it left (a certificate rolled back): no longer retiring
    back = track(tracked, [new.cert, old.cert], t2 + dt.timedelta(seconds=1), GRACE)
    assert all(t.unused_since is None for t in back)


def test_status_round_trip():
    ca = TestCA("root")
    tracked = synced(track((), [ca.cert], NOW, GRACE), NOW.replace(microsecond=0))
    assert from_status(to_status(tracked)) == tracked
    assert from_status([{"fingerprint": "x"}, "junk"]) == ()


def test_rotation_waits_for_every_bundle_then_propagation_then_its_place_in_the_spread():
    prop, spread = dt.timedelta(minutes=2), dt.timedelta(minutes=5)
    since_a, since_b = NOW, NOW + dt.timedelta(seconds=10)
    entry = lambda since: {"fp": TrackedCA("fp", "", NOW + dt.timedelta(days=1), since)}  # noqa: E731
    assert trusted_since([entry(since_a), {}], "fp") == (False, None)  # one Bundle lacks the new root
    assert trusted_since([entry(since_a), entry(None)], "fp") == (False, None)  # written, not everywhere yet
    assert trusted_since([entry(since_a), entry(since_b)], "fp") == (True, since_b)
    assert trusted_since([], "fp") == (True, None)
    ca_issued = NOW - dt.timedelta(seconds=1)
    at = rotation_time("ns/web", ca_issued, (True, since_b), prop, spread)
    assert since_b + prop <= at < since_b + prop + spread
    assert at == rotation_time("ns/web", ca_issued, (True, since_b), prop, spread)  # stable
    assert rotation_time("ns/web", ca_issued, (False, None), prop, spread) is None
    # no Bundle follows the issuer: counted from the CA's issuance
    assert ca_issued + prop <= rotation_time("ns/web", ca_issued, (True, None), prop, spread) < ca_issued + prop + spread


def test_spread_offsets_cover_the_window():
    spread = dt.timedelta(minutes=5)
    offsets = [spread_offset(f"ns/cert-{i}", spread) for i in range(1000)]
    assert all(dt.timedelta(0) <= o < spread for o in offsets)
    buckets = {int(o / (spread / 10)) for o in offsets}
    assert buckets == set(range(10))  # spread over the whole window, not bunched
    assert spread_offset("x", dt.timedelta(0)) == dt.timedelta(0)


def test_in_line_pem_text_is_accepted():
    ca = TestCA("inline")
    built = build_bundle([("inLine", ca.cert_pem.decode())], TARGET, NOW)
    assert x509.load_pem_x509_certificate(built.pem).public_bytes(serialization.Encoding.PEM) == ca.cert_pem
