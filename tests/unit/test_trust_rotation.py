"""The IssuerChanged trigger: a certificate signed by a previous key of its CA is re-issued by the
new one, but only at its turn (rotation_at): after its peers trust the new root."""
from __future__ import annotations

import dataclasses
import datetime as dt

from certmint.issuance import issue_certificate, issued_secret
from certmint.issuers import issuer_state
from certmint.model import parse_certificate_spec, parse_issuer_spec
from certmint.policy import Issue, Observed, UpToDate, decide
from certmint.policy.checks import parse_contents, signed_by_current_ca
from certmint.policy.types import SecretState

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.timezone.utc)
SELF_SIGNED = issuer_state(parse_issuer_spec({"selfSigned": {}}), None, NOW)
ROOT_SPEC = {"secretName": "root", "commonName": "Example Root", "isCA": True, "duration": "8760h",
             "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
             "issuerRef": {"name": "selfsigned"}}
LEAF_SPEC = {"secretName": "web-tls", "commonName": "web", "dnsNames": ["web.example.com"], "duration": "24h",
             "privateKey": {"algorithm": "ECDSA", "size": 256}, "issuerRef": {"name": "ca", "kind": "ClusterIssuer"}}
CA_ISSUER = parse_issuer_spec({"ca": {"secretName": "root"}})


def ca_secret(name: str, at: dt.datetime = NOW, previous: SecretState | None = None) -> SecretState:
    """A root CA Secret; with previous, the same root re-issued with a new key (rotationPolicy Always)."""
    spec = parse_certificate_spec(ROOT_SPEC)
    return issued_secret("root", name, spec, issue_certificate(spec, SELF_SIGNED, previous, at), 1, None, None)


def leaf(ca: SecretState) -> SecretState:
    spec = parse_certificate_spec(LEAF_SPEC)
    state = issuer_state(CA_ISSUER, ca, NOW)
    return issued_secret("web-tls", "web", spec, issue_certificate(spec, state, None, NOW), 1, None, None)


def observe(secret: SecretState, ca: SecretState, at: dt.datetime = NOW, **kw) -> Observed:
    return Observed("web", 1, parse_certificate_spec(LEAF_SPEC), secret, issuer_state(CA_ISSUER, ca, at), at, **kw)


def test_a_certificate_of_the_current_key_is_up_to_date():
    ca = ca_secret("root")
    obs = observe(leaf(ca), ca)
    contents = parse_contents(obs)
    assert not isinstance(contents, Issue)
    assert signed_by_current_ca(obs, contents) is None
    assert isinstance(decide(obs), UpToDate)


def test_a_new_ca_key_is_the_issuer_changed_trigger():
    old = ca_secret("root")
    new = ca_secret("root", NOW + dt.timedelta(seconds=1), previous=old)
    assert new.data["tls.key"] != old.data["tls.key"]  # same name, new key
    d = decide(observe(leaf(old), new, NOW + dt.timedelta(seconds=2)))
    assert isinstance(d, Issue) and d.reason == "IssuerChanged"
    assert "previous key of its issuer's CA (CN=Example Root)" in d.message


def test_issuer_changed_waits_for_its_turn_and_keeps_the_certificate_ready():
    old = ca_secret("root")
    new = ca_secret("root", NOW + dt.timedelta(seconds=1), previous=old)
    at = NOW + dt.timedelta(minutes=3)
    d = decide(observe(leaf(old), new, NOW + dt.timedelta(seconds=2), rotation_at=lambda: at))
    assert isinstance(d, UpToDate) and d.renewal_time == at  # renewed then, Ready until
    d = decide(observe(leaf(old), new, at, rotation_at=lambda: at))
    assert isinstance(d, Issue) and d.reason == "IssuerChanged"


def test_the_gate_is_asked_only_when_the_issuer_changed():
    asked: list[int] = []
    old = ca_secret("root")
    new = ca_secret("root", NOW + dt.timedelta(seconds=1), previous=old)
    at = NOW + dt.timedelta(minutes=3)

    def gate() -> dt.datetime:
        asked.append(1)
        return at

    assert isinstance(decide(observe(leaf(new), new, NOW + dt.timedelta(seconds=2), rotation_at=gate)), UpToDate)
    assert asked == []  # signed by the current key: the bundles above the issuer are never read
    d = decide(observe(leaf(old), new, NOW + dt.timedelta(seconds=2), rotation_at=gate))
    assert isinstance(d, UpToDate) and d.renewal_time == at and asked == [1]


def test_the_gate_only_holds_back_issuer_changed():
    """An expired certificate, or a changed spec, is issued at once whatever the rotation schedule."""
    old = ca_secret("root")
    new = ca_secret("root", NOW + dt.timedelta(seconds=1), previous=old)
    later = NOW + dt.timedelta(days=2)
    d = decide(observe(leaf(old), new, later, rotation_at=lambda: later + dt.timedelta(hours=1)))
    assert isinstance(d, Issue) and d.reason == "Expired"


def test_self_signed_and_external_issuers_have_no_ca_to_compare():
    ca = ca_secret("root")
    obs = observe(leaf(ca), ca)
    contents = parse_contents(obs)
    assert not isinstance(contents, Issue)
    assert signed_by_current_ca(dataclasses.replace(obs, issuer=SELF_SIGNED), contents) is None
    external = dataclasses.replace(issuer_state(CA_ISSUER, ca_secret("other"), NOW), external=True)
    assert signed_by_current_ca(dataclasses.replace(obs, issuer=external), contents) is None


def test_a_gated_certificate_is_still_renewed_at_its_ordinary_time():
    """A Bundle that never takes the new root (a conflict, a broken source) holds the rotation back,
    but never past the certificate's own renewal: then it is issued (no loop on a past renewal time)."""
    old = ca_secret("root")
    new = ca_secret("root", NOW + dt.timedelta(seconds=1), previous=old)
    later = NOW + dt.timedelta(days=300)
    d = decide(observe(leaf(old), new, NOW + dt.timedelta(hours=15), rotation_at=lambda: later))
    assert isinstance(d, UpToDate) and d.renewal_time < NOW + dt.timedelta(hours=17)  # its ordinary renewal
    d = decide(observe(leaf(old), new, NOW + dt.timedelta(hours=17), rotation_at=lambda: later))  # past it: issued
    assert isinstance(d, Issue) and d.reason == "IssuerChanged"
