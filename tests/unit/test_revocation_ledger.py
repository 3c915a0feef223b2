"""certmint.revocation: the spec, the issuance history, what a revocation covers, the ledger kept
in the CRL ConfigMap, when to re-sign, and the status, all without a cluster."""
from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest
from certmint.model import SpecError
from certmint.model.issuer import parse_issuer_spec
from certmint.pki.crl import CRL_SIGN_NOT_ALLOWED, CRLError, RevokedCertificate, parse_crl
from certmint.pki.signing import random_serial
from certmint.pki.types import ECDSA, PKIError
from certmint.revocation import (
    ALL_VALID,
    CERTIFICATE_NOT_FOUND,
    CRL_CONTENT_TYPE,
    CRL_KEY,
    CRL_NOT_ENABLED,
    CRL_NUMBER_ANNOTATION,
    CURRENT,
    DEFAULT_HISTORY_LIMIT,
    INVALID_SPEC,
    MIN_PUBLISH_INTERVAL,
    ISSUER_CANNOT_PUBLISH_CRL,
    ISSUER_NOT_FOUND,
    MAX_HISTORY_LIMIT,
    NO_VALID_CERTIFICATE,
    NOT_AFTER_KEY,
    NOT_ISSUED,
    PENDING,
    REASONS,
    RETRY_AFTER,
    Coverage,
    CoveredSerial,
    IssuanceRecord,
    IssuerCRL,
    IssuerKey,
    Ledger,
    Problem,
    Revocation,
    configmap_name,
    configmap_namespace,
    coverage_from_status,
    coverage_status,
    crl_condition_problem,
    crl_problem,
    crl_published_condition,
    current_certificate_revocation,
    desired_entries,
    format_serial,
    history_status,
    http_path,
    issuer_crl,
    issuer_of_http_path,
    parse_history,
    parse_revocation_spec,
    parse_serial,
    plan_crl,
    publish,
    read_ledger,
    reconcile_crl,
    reconcile_revocation,
    record_issuance,
    refresh_time,
    resolve_coverage,
    revocation_of,
    revocation_status,
    revoked_serials,
    served_crl,
)

from tests.unit.test_pki_crl import make_ca

NOW = dt.datetime(2026, 6, 1, 12, 0, 0, tzinfo=dt.timezone.utc)
HOUR, DAY = dt.timedelta(hours=1), dt.timedelta(days=1)
NS = "netstress"
CA_ISSUER = IssuerKey("Issuer", "agents-ca", NS)
OTHER_ISSUER = IssuerKey("ClusterIssuer", "root")


# ------------------------------------------------------------------ spec


@pytest.mark.parametrize("spec, expected", [
    ({"certificateName": "agent-01", "reason": "keyCompromise"},
     {"certificate_name": "agent-01", "revisions": CURRENT, "reason": "keyCompromise"}),
    ({"certificateName": "agent-01", "revisions": "AllValid", "reason": "superseded"},
     {"certificate_name": "agent-01", "revisions": ALL_VALID, "reason": "superseded"}),
    ({"issuerRef": {"name": "agents-ca"}, "serialNumber": "5f:3A:09", "reason": "certificateHold"},
     {"issuer_kind": "Issuer", "issuer_name": "agents-ca", "serial": 0x5F3A09, "reason": "certificateHold"}),
    ({"issuerRef": {"name": "root", "kind": "ClusterIssuer"}, "serialNumber": "0A", "reason": "unspecified"},
     {"issuer_kind": "ClusterIssuer", "issuer_name": "root", "serial": 10, "reason": "unspecified"}),
])
def test_good_specs(spec, expected):
    parsed = parse_revocation_spec(spec)
    for field, value in expected.items():
        assert getattr(parsed, field) == value


@pytest.mark.parametrize("spec, message", [
    ({"reason": "keyCompromise"}, "exactly one target"),
    ({"certificateName": "a", "issuerRef": {"name": "ca"}, "serialNumber": "01", "reason": "keyCompromise"},
     "exactly one target"),
    ({"certificateName": "a"}, "reason is required"),
    ({"certificateName": "a", "reason": "removeFromCRL"}, "not an RFC 5280 revocation reason"),
    ({"certificateName": "a", "reason": "compromised"}, "not an RFC 5280 revocation reason"),
    ({"certificateName": "a", "reason": "superseded", "revisions": "All"}, "Current or AllValid"),
    ({"certificateName": "Agent_01", "reason": "superseded"}, "not a valid object name"),
    ({"issuerRef": {"name": "ca"}, "reason": "superseded"}, "needs both issuerRef and serialNumber"),
    ({"serialNumber": "01", "reason": "superseded"}, "needs both issuerRef and serialNumber"),
    ({"issuerRef": {"name": "ca"}, "serialNumber": "xyz", "reason": "superseded"}, "not a serial number in hex"),
    ({"issuerRef": {"name": "ca"}, "serialNumber": "00", "reason": "superseded"}, "not 0"),
    ({"issuerRef": {"name": "ca"}, "serialNumber": "1" * 41, "reason": "superseded"}, "at most 20 octets"),
    ({"issuerRef": {"name": "ca", "kind": "Vault"}, "serialNumber": "01", "reason": "superseded"},
     "Issuer or ClusterIssuer"),
    ({"issuerRef": {"name": "ca"}, "serialNumber": "01", "revisions": "AllValid", "reason": "superseded"},
     "revisions applies to certificateName only"),
    ({"certificateName": 5, "reason": "superseded"}, "must be a string"),
])
def test_bad_specs(spec, message):
    with pytest.raises(SpecError, match=message):
        parse_revocation_spec(spec)


def test_reasons_are_rfc_5280s_without_remove_from_crl():
    assert REASONS == ("unspecified", "keyCompromise", "cACompromise", "affiliationChanged", "superseded",
                       "cessationOfOperation", "certificateHold", "privilegeWithdrawn", "aACompromise")


@pytest.mark.parametrize("text, value, formatted", [
    ("5F3A09", 0x5F3A09, "5F3A09"), ("5f:3a:09", 0x5F3A09, "5F3A09"), ("A", 10, "0A"),
    ("7" + "f" * 39, int("7" + "f" * 39, 16), "7" + "F" * 39),
])
def test_serial_formats(text, value, formatted):
    assert parse_serial(text) == value
    assert format_serial(value) == formatted
    assert parse_serial(format_serial(value)) == value


def test_issuer_keys():
    assert IssuerKey.of("Issuer", "ca", NS) == IssuerKey("Issuer", "ca", NS)
    assert IssuerKey.of("ClusterIssuer", "ca", NS) == IssuerKey("ClusterIssuer", "ca", None)
    assert str(CA_ISSUER) == "Issuer netstress/agents-ca" and str(OTHER_ISSUER) == "ClusterIssuer root"


# ------------------------------------------------------------------ issuance history


def record(revision: int, serial: int | None = None, not_after: dt.datetime = NOW + 90 * DAY,
           issuer: IssuerKey = CA_ISSUER) -> IssuanceRecord:
    return IssuanceRecord(revision, serial or 0x1000 + revision, not_after, issuer)


def test_history_appends_and_trims_to_the_limit():
    history: tuple[IssuanceRecord, ...] = ()
    for revision in range(1, 6):
        history = record_issuance(history, record(revision), limit=3)
    assert [r.revision for r in history] == [3, 4, 5]
    # the same revision written twice (a retried status patch) is one record
    again = record_issuance(history, record(5, serial=0x99), limit=3)
    assert [(r.revision, r.serial) for r in again] == [(3, 0x1003), (4, 0x1004), (5, 0x99)]


def test_history_limit_defaults_and_cap():
    history: tuple[IssuanceRecord, ...] = ()
    for revision in range(1, MAX_HISTORY_LIMIT + 20):
        history = record_issuance(history, record(revision), limit=None)
    assert len(history) == DEFAULT_HISTORY_LIMIT
    for revision in range(1, MAX_HISTORY_LIMIT + 20):
        history = record_issuance(history, record(revision), limit=10_000)
    assert len(history) == MAX_HISTORY_LIMIT


def test_history_status_round_trip():
    history = (record(1, issuer=OTHER_ISSUER), record(2, serial=random_serial()))
    status = {"issuanceHistory": history_status(history)}
    assert status["issuanceHistory"][0] == {"revision": 1, "serialNumber": "1001",
                                            "notAfter": "2026-08-30T12:00:00Z",
                                            "issuerRef": {"name": "root", "kind": "ClusterIssuer"}}
    assert parse_history(status, NS) == history


def test_unreadable_history_records_are_left_out():
    good = history_status([record(2)])[0]
    status = {"issuanceHistory": [
        "not a record", {**good, "revision": 1, "serialNumber": "zz"}, {**good, "revision": True},
        {**good, "revision": 3, "notAfter": "tomorrow"}, {**good, "revision": 4, "issuerRef": {"kind": "Issuer"}},
        good]}
    assert parse_history(status, NS) == (record(2),)
    assert parse_history(None, NS) == () and parse_history({}, NS) == ()


# ------------------------------------------------------------------ coverage


def spec(**fields):
    return parse_revocation_spec({"reason": "keyCompromise", **fields})


HISTORY = (record(1, not_after=NOW - DAY), record(2, not_after=NOW + 30 * DAY), record(3, not_after=NOW + 90 * DAY))


def test_current_covers_the_latest_revision_and_all_valid_the_unexpired():
    current = resolve_coverage(spec(certificateName="agent-01"), NS, None, HISTORY, NOW)
    assert current == Coverage((CoveredSerial(CA_ISSUER, 0x1003, NOW + 90 * DAY, 3),), NOW)
    every = resolve_coverage(spec(certificateName="agent-01", revisions="AllValid"), NS, None, HISTORY, NOW)
    assert [s.revision for s in every.serials] == [2, 3]


def test_serial_revocation_covers_that_serial():
    coverage = resolve_coverage(spec(issuerRef={"name": "root", "kind": "ClusterIssuer"}, serialNumber="0B"),
                                NS, None, None, NOW + dt.timedelta(microseconds=5))
    assert coverage == Coverage((CoveredSerial(OTHER_ISSUER, 11),), NOW)


@pytest.mark.parametrize("history, revisions, reason", [
    (None, "Current", CERTIFICATE_NOT_FOUND),
    ((), "Current", NOT_ISSUED),
    ((record(1, not_after=NOW - DAY),), "AllValid", NO_VALID_CERTIFICATE),
])
def test_nothing_to_revoke_yet(history, revisions, reason):
    coverage = resolve_coverage(spec(certificateName="agent-01", revisions=revisions), NS, None, history, NOW)
    assert coverage.serials == () and coverage.revoked_at is None and coverage.problem.reason == reason
    assert coverage_status(coverage) == {}


def test_coverage_is_pinned_by_the_status():
    """After the re-issue the revocation triggers, Current still means the revoked certificate,
    and it still does once the Certificate is deleted."""
    first = resolve_coverage(spec(certificateName="agent-01"), NS, None, HISTORY, NOW)
    status = coverage_status(first)
    assert status == {"revokedAt": "2026-06-01T12:00:00Z", "serials": [
        {"serialNumber": "1003", "issuerRef": {"name": "agents-ca", "kind": "Issuer"},
         "notAfter": "2026-08-30T12:00:00Z", "revision": 3}]}
    reissued = (*HISTORY, record(4))
    later = NOW + HOUR
    assert resolve_coverage(spec(certificateName="agent-01"), NS, status, reissued, later) == first
    assert resolve_coverage(spec(certificateName="agent-01"), NS, status, None, later) == first
    assert coverage_from_status({"revokedAt": "garbage", "serials": status["serials"]}, NS) is None
    assert coverage_from_status({"revokedAt": "2026-06-01T12:00:00Z", "serials": []}, NS) is None


def test_revoked_serials_for_the_policy_chain():
    revocations = [
        Revocation("keyCompromise", Coverage((CoveredSerial(CA_ISSUER, 5), CoveredSerial(OTHER_ISSUER, 6)), NOW)),
        Revocation("certificateHold", Coverage((CoveredSerial(CA_ISSUER, 7),), NOW)),
    ]
    assert revoked_serials(revocations, CA_ISSUER) == {5, 7}
    assert revoked_serials(revocations, OTHER_ISSUER) == {6}


# ------------------------------------------------------------------ desired entries


def revocation(reason: str, *serials: int, at: dt.datetime = NOW, issuer: IssuerKey = CA_ISSUER,
               not_after: dt.datetime | None = NOW + 90 * DAY) -> Revocation:
    return Revocation(reason, Coverage(tuple(CoveredSerial(issuer, s, not_after) for s in serials), at))


def ledger_of(*entries: RevokedCertificate, published_at: dt.datetime = NOW - HOUR) -> Ledger:
    from certmint.pki.crl import ParsedCRL
    parsed = ParsedCRL(3, None, None, published_at, published_at + DAY,  # type: ignore[arg-type]
                       tuple(replace(e, not_after=None) for e in entries))
    return Ledger(number=3, published=parsed, entries=tuple(entries))


def entry(serial, reason="keyCompromise", at=NOW - HOUR, not_after=NOW + 90 * DAY):
    return RevokedCertificate(serial, at, reason, not_after)


def test_new_revocations_are_added_and_other_issuers_ignored():
    desired = desired_entries(Ledger(), [revocation("keyCompromise", 9, 3), revocation("superseded", 4,
                              issuer=OTHER_ISSUER)], CA_ISSUER, NOW + 365 * DAY)
    assert desired == (RevokedCertificate(3, NOW, "keyCompromise", NOW + 90 * DAY),
                       RevokedCertificate(9, NOW, "keyCompromise", NOW + 90 * DAY))


def test_append_only_deleting_a_revocation_does_not_unrevoke():
    ledger = ledger_of(entry(1), entry(2, "superseded"))
    assert desired_entries(ledger, [], CA_ISSUER, None) == ledger.entries
    # a later revocation of the same serial changes nothing: the first one stands
    assert desired_entries(ledger, [revocation("cACompromise", 1, at=NOW)], CA_ISSUER, None) == ledger.entries


def test_a_hold_is_released_when_its_revocation_is_deleted():
    held = entry(5, "certificateHold")
    ledger = ledger_of(entry(1), held)
    assert desired_entries(ledger, [revocation("certificateHold", 5)], CA_ISSUER, None) == (entry(1), held)
    assert desired_entries(ledger, [], CA_ISSUER, None) == (entry(1),)


def test_a_hold_becomes_permanent_keeping_its_date():
    ledger = ledger_of(entry(5, "certificateHold"))
    both = [revocation("certificateHold", 5), revocation("keyCompromise", 5, at=NOW + HOUR)]
    assert desired_entries(ledger, both, CA_ISSUER, None) == (entry(5, "keyCompromise"),)
    # with nothing published yet, the permanent reason wins over an earlier hold
    fresh = desired_entries(Ledger(), [revocation("certificateHold", 5, at=NOW - DAY),
                                       revocation("superseded", 5, at=NOW)], CA_ISSUER, None)
    assert [(e.reason, e.revoked_at) for e in fresh] == [("superseded", NOW)]
    # and among permanent reasons the earliest
    two = desired_entries(Ledger(), [revocation("superseded", 5, at=NOW), revocation("keyCompromise", 5,
                                     at=NOW - HOUR)], CA_ISSUER, None)
    assert [(e.reason, e.revoked_at) for e in two] == [("keyCompromise", NOW - HOUR)]


def test_expired_entries_leave_after_one_crl_listed_them_expired():
    expired = entry(1, not_after=NOW - DAY)
    still = entry(2)
    assert desired_entries(ledger_of(expired, still, published_at=NOW - HOUR), [], CA_ISSUER, None) == (still,)
    # not yet on a CRL issued after it expired: it stays for one more
    assert desired_entries(ledger_of(expired, still, published_at=NOW - 2 * DAY), [], CA_ISSUER, None) \
        == (expired, still)
    # an unknown notAfter (a serial-number revocation) is bounded by the CA's own notAfter
    unknown = desired_entries(Ledger(), [revocation("superseded", 7, not_after=None)], CA_ISSUER, NOW + 9 * DAY)
    assert unknown[0].not_after == NOW + 9 * DAY


# ------------------------------------------------------------------ the ConfigMap ledger


def test_configmap_names_and_paths():
    assert configmap_name("agents-ca") == "agents-ca-crl"
    assert configmap_namespace(CA_ISSUER, "certmint") == NS
    assert configmap_namespace(OTHER_ISSUER, "certmint") == "certmint"
    assert http_path(CA_ISSUER) == "/crls/netstress/agents-ca.crl" and http_path(OTHER_ISSUER) == "/crls/root.crl"
    for key in (CA_ISSUER, OTHER_ISSUER):
        assert issuer_of_http_path(http_path(key)) == key
    for bad in ("/crls/a/b/c.crl", "/crls/../x.crl", "/crls/.crl", "/crls//x.crl", "/metrics", "/crls/x.pem"):
        assert issuer_of_http_path(bad) is None, bad


@pytest.fixture(scope="module")
def ca():
    return make_ca(ECDSA, "Agents CA", now=NOW - DAY)


def published(ca, entries, number=1, now=NOW, validity=DAY):
    plan = plan_crl(Ledger(number=number - 1), entries, ca, validity, now)
    return plan, publish(ca, CA_ISSUER, NS, entries, plan)


def configmap_ledger(publication, status_number=None):
    configmap = publication.configmap
    return read_ledger(configmap["data"], configmap["metadata"]["annotations"], status_number)


def test_the_configmap_round_trips_the_ledger(ca):
    entries = (entry(random_serial()), entry(random_serial(), "unspecified", not_after=None),
               entry(random_serial(), "certificateHold", not_after=NOW + DAY))
    _, publication = published(ca, entries, number=41)
    configmap = publication.configmap
    assert configmap["metadata"]["name"] == "agents-ca-crl" and configmap["metadata"]["namespace"] == NS
    assert configmap["metadata"]["annotations"][CRL_NUMBER_ANNOTATION] == "41"
    assert configmap["metadata"]["labels"]["certmint.io/crl"] == "true"
    assert configmap["data"][CRL_KEY].startswith("-----BEGIN X509 CRL-----")
    assert parse_crl(publication.der, ca.certificate).number == 41
    ledger = configmap_ledger(publication)
    assert ledger.number == 41 and ledger.damaged is None
    assert sorted(ledger.entries) == sorted(entries)
    assert publication.status == {"number": 41, "thisUpdate": "2026-06-01T12:00:00Z",
                                  "nextUpdate": "2026-06-02T12:00:00Z", "revokedCertificates": 3,
                                  "configMap": "agents-ca-crl"}


def test_not_after_of_another_crl_is_ignored(ca):
    _, first = published(ca, (entry(1), entry(2)), number=1)
    _, second = published(ca, (entry(1), entry(3, not_after=NOW + 5 * DAY)), number=2)
    mixed = {CRL_KEY: second.configmap["data"][CRL_KEY], NOT_AFTER_KEY: first.configmap["data"][NOT_AFTER_KEY]}
    ledger = read_ledger(mixed, None)
    assert [e.not_after for e in ledger.entries] == [None, None]  # unknown, never wrong


def test_the_crl_number_never_repeats():
    # the largest of the CRL's, the annotation's and the issuer status's number, plus one
    assert read_ledger(None, None).number == 0
    assert read_ledger(None, {CRL_NUMBER_ANNOTATION: "7"}, status_number=9).number == 9
    assert read_ledger(None, {CRL_NUMBER_ANNOTATION: "nonsense"}, status_number=None).number == 0
    damaged = read_ledger({CRL_KEY: "-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n"},
                          {CRL_NUMBER_ANNOTATION: "12"}, status_number=11)
    assert damaged.number == 12 and damaged.published is None and "could not be read" in damaged.damaged


def test_a_crl_too_large_for_a_configmap_is_refused(ca):
    entries = [entry(random_serial()) for _ in range(16_000)]
    with pytest.raises(PKIError, match="more than a ConfigMap holds") as raised:
        published(ca, entries)
    assert raised.value.reason == "CRLTooLarge"


# ------------------------------------------------------------------ when to sign


def test_refresh_time():
    assert refresh_time(NOW, NOW + DAY) == NOW + 16 * HOUR
    assert refresh_time(NOW, NOW + 3 * HOUR) == NOW + HOUR  # at least 2h before nextUpdate
    assert refresh_time(NOW, NOW + 7 * DAY) == NOW + 7 * DAY * 2 / 3


def test_plan_reasons(ca):
    entries = (entry(1),)
    assert plan_crl(Ledger(), entries, ca, DAY, NOW).reason == "NotPublished"
    assert plan_crl(Ledger(number=4, damaged="x"), entries, ca, DAY, NOW).reason == "Unreadable"
    _, publication = published(ca, entries, number=5)
    ledger = configmap_ledger(publication)
    up_to_date = plan_crl(ledger, entries, ca, DAY, NOW + HOUR)
    assert not up_to_date.sign and up_to_date.recheck_at == NOW + 16 * HOUR
    assert plan_crl(ledger, (*entries, entry(2)), ca, DAY, NOW + HOUR).reason == "EntriesChanged"
    assert plan_crl(ledger, (entry(1, "superseded"),), ca, DAY, NOW + HOUR).reason == "EntriesChanged"
    assert plan_crl(ledger, entries, ca, 2 * DAY, NOW + HOUR).reason == "ValidityChanged"
    refresh = plan_crl(ledger, entries, ca, DAY, NOW + 16 * HOUR)
    assert refresh.reason == "Refresh" and refresh.number == 6
    assert (refresh.this_update, refresh.next_update) == (NOW + 16 * HOUR, NOW + 40 * HOUR)
    rotated = make_ca(ECDSA, "Agents CA", now=NOW - DAY)  # same name, new key
    assert plan_crl(ledger, entries, rotated, DAY, NOW + HOUR).reason == "IssuerChanged"


def test_plan_uses_whole_seconds():
    plan = plan_crl(Ledger(), (), None, DAY + dt.timedelta(microseconds=300), NOW + dt.timedelta(microseconds=900))
    assert plan.this_update == NOW and plan.next_update == NOW + DAY and plan.number == 1


# ------------------------------------------------------------------ status


def state(published=frozenset(), number=None, kind="CA", enabled=True, problem=None):
    return IssuerCRL(kind, enabled, frozenset(published), number, problem)


def current_revocation():
    s = spec(certificateName="agent-01")
    return s, resolve_coverage(s, NS, None, HISTORY, NOW)


def conditions(status):
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def test_revoked_once_the_crl_lists_it():
    s, coverage = current_revocation()
    pending = revocation_status(s, None, coverage, {CA_ISSUER: state()}, None, 1, NOW)
    assert conditions(pending) == {"Ready": ("False", PENDING), "Revoked": ("False", PENDING)}
    assert pending["serials"][0]["serialNumber"] == "1003" and pending["revokedAt"] == "2026-06-01T12:00:00Z"
    done = revocation_status(s, None, coverage, {CA_ISSUER: state({0x1003}, 7)}, pending, 1, NOW + HOUR)
    assert conditions(done) == {"Ready": ("True", "Revoked"), "Revoked": ("True", "Revoked")}
    assert done["crlNumber"] == 7
    message = done["conditions"][0]["message"]
    assert message == ("the current certificate of Certificate agent-01 revoked (keyCompromise): "
                       "serial 1003 on the CRL of Issuer netstress/agents-ca")
    assert done["conditions"][0]["lastTransitionTime"] == "2026-06-01T13:00:00Z"
    again = revocation_status(s, None, coverage, {CA_ISSUER: state({0x1003}, 8)}, done, 1, NOW + DAY)
    assert [c["lastTransitionTime"] for c in again["conditions"]] == ["2026-06-01T13:00:00Z"] * 2


def test_an_expired_serial_counts_as_published():
    s, coverage = current_revocation()
    later = NOW + 100 * DAY  # the certificate expired and left the CRL
    assert conditions(revocation_status(s, None, coverage, {CA_ISSUER: state(set(), 20)}, None, 1, later))["Ready"] \
        == ("True", "Revoked")


@pytest.mark.parametrize("issuer_state, reason, fragment", [
    (None, ISSUER_NOT_FOUND, "Issuer netstress/agents-ca does not exist"),
    (state(kind="SelfSigned", enabled=False), ISSUER_CANNOT_PUBLISH_CRL, "is self-signed and cannot publish a CRL"),
    (state(enabled=False), CRL_NOT_ENABLED, "set spec.ca.crl"),
])
def test_why_a_revocation_is_not_in_effect(issuer_state, reason, fragment):
    s, coverage = current_revocation()
    status = revocation_status(s, None, coverage, {CA_ISSUER: issuer_state}, None, 2, NOW)
    assert conditions(status) == {"Ready": ("False", reason), "Revoked": ("False", reason)}
    assert fragment in status["conditions"][0]["message"]
    assert status["conditions"][0]["observedGeneration"] == 2
    assert status["serials"]  # the coverage is pinned all the same


def test_invalid_spec_and_missing_certificate():
    status = revocation_status(None, 'reason "x" is not an RFC 5280 revocation reason', None, {}, None, 1, NOW)
    assert conditions(status)["Ready"] == ("False", INVALID_SPEC) and "serials" not in status
    s = spec(certificateName="ghost")
    coverage = resolve_coverage(s, NS, None, None, NOW)
    status = revocation_status(s, None, coverage, {}, None, 1, NOW)
    assert conditions(status)["Revoked"] == ("False", CERTIFICATE_NOT_FOUND)


def test_issuer_crl_from_the_issuer_spec(ca):
    _, publication = published(ca, (entry(1),), number=3)
    ledger = configmap_ledger(publication)
    enabled = issuer_crl(parse_issuer_spec({"ca": {"secretName": "agents-ca", "crl": {}}}), ledger)
    assert enabled == IssuerCRL("CA", True, frozenset({1}), 3, None)
    assert issuer_crl(parse_issuer_spec({"ca": {"secretName": "agents-ca"}}), None).crl_enabled is False
    assert issuer_crl(parse_issuer_spec({"selfSigned": {}}), None).kind == "SelfSigned"


@pytest.mark.parametrize("crl, validity", [({}, DAY), ({"validity": "168h"}, 7 * DAY), ({"validity": "3h"}, 3 * HOUR)])
def test_issuer_crl_validity(crl, validity):
    assert parse_issuer_spec({"ca": {"secretName": "ca", "crl": crl}}).crl_validity == validity


@pytest.mark.parametrize("crl, message", [
    ({"validity": "2h59m"}, "at least 3h"), ({"validity": "1d"}, "ca.crl.validity"), ("yes", "ca.crl must be an object"),
])
def test_bad_issuer_crl_validity(crl, message):
    with pytest.raises(SpecError, match=message):
        parse_issuer_spec({"ca": {"secretName": "ca", "crl": crl}})


# ------------------------------------------------------------------ the whole story, without a cluster


def test_revocations_survive_restarts_deletions_and_keep_numbers_growing(ca):
    """What the controller does on each reconcile, replayed with only what the API keeps:
    the ConfigMap, the issuer's status.crl.number and the revocations' status."""
    agent01 = (record(1, serial=0xA1),)
    s = spec(certificateName="agent-01")

    def reconcile(configmap, status_number, revocations, now):
        data, annotations = (configmap["data"], configmap["metadata"]["annotations"]) if configmap else (None, None)
        ledger = read_ledger(data, annotations, status_number)
        desired = desired_entries(ledger, revocations, CA_ISSUER, ca.certificate.not_valid_after_utc)
        plan = plan_crl(ledger, desired, ca, DAY, now)
        if not plan.sign:
            return configmap, status_number, None
        publication = publish(ca, CA_ISSUER, NS, desired, plan)
        return publication.configmap, publication.status["number"], publication

    status = revocation_status(s, None, resolve_coverage(s, NS, None, agent01, NOW), {}, None, 1, NOW)
    live = [Revocation("keyCompromise", resolve_coverage(s, NS, status, None, NOW))]
    configmap, number, first = reconcile(None, None, live, NOW)
    assert number == 1 and parse_crl(first.der).serials() == {0xA1}
    # a restart with nothing changed writes nothing
    assert reconcile(configmap, number, live, NOW + HOUR)[2] is None
    # the revocation object and the Certificate are deleted: still revoked
    configmap, number, publication = reconcile(configmap, number, [], NOW + 2 * HOUR)
    assert publication is None and parse_crl(configmap["data"][CRL_KEY].encode()).serials() == {0xA1}
    # someone deletes the ConfigMap: the revocation's pinned status brings the entry back,
    # and the issuer's status keeps the number from repeating
    configmap, number, publication = reconcile(None, number, live, NOW + 3 * HOUR)
    assert number == 2 and parse_crl(publication.der).serials() == {0xA1}
    # the scheduled refresh: a new number, the same entries
    configmap, number, publication = reconcile(configmap, number, live, NOW + 3 * HOUR + 16 * HOUR)
    assert number == 3 and parse_crl(publication.der).serials() == {0xA1}


def test_crl_published_condition_of_the_issuer(ca):
    plan, publication = published(ca, (entry(1), entry(2)), number=4)
    message = ("CRL number 4 lists 2 revoked certificates, valid until 2026-06-02T12:00:00Z; "
               "published in ConfigMap agents-ca-crl (ca.crl)")
    assert crl_published_condition(publication.status, None) == ("True", "Published", message)
    assert crl_published_condition(None, None)[:2] == ("False", "NotPublished")
    no_crl_sign = make_ca(ECDSA, usages=("cert sign", "digital signature"))
    with pytest.raises(CRLError) as raised:
        publish(no_crl_sign, CA_ISSUER, NS, (entry(1),), plan)
    assert raised.value.reason == CRL_SIGN_NOT_ALLOWED
    status, reason, message = crl_published_condition(publication.status, crl_problem(raised.value))
    assert (status, reason) == ("False", "CRLSignNotAllowed") and "crl sign" in message


# ------------------------------------------------------------------ the controller's two calls


def revocation_object(name="agent-01-key-leaked", spec_fields=None, status=None, generation=1):
    return {"apiVersion": "certmint.io/v1", "kind": "CertificateRevocation",
            "metadata": {"name": name, "namespace": NS, "generation": generation},
            "spec": spec_fields or {"certificateName": "agent-01", "reason": "keyCompromise"},
            "status": status or {}}


def certificate_object(history):
    return {"metadata": {"name": "agent-01", "namespace": NS}, "status": {"issuanceHistory": history_status(history)}}


def test_reconcile_revocation_pins_then_reports_revoked():
    obj = revocation_object()
    assert revocation_of(obj) is None  # nothing pinned yet: not on any CRL
    first = reconcile_revocation(obj, certificate_object(HISTORY), lambda key: state(), NOW)
    assert conditions(first.status)["Revoked"] == ("False", PENDING)
    assert first.issuers == {CA_ISSUER}  # enqueue its CRL
    assert first.revocation.coverage.serials[0].serial == 0x1003 and first.revocation.name == "agent-01-key-leaked"
    # written, then the Certificate is re-issued (revision 4): the revocation still means revision 3
    obj = revocation_object(status=first.status)
    assert revocation_of(obj) == first.revocation
    reissued = certificate_object((*HISTORY, record(4)))
    second = reconcile_revocation(obj, reissued, lambda key: state({0x1003}, 9), NOW + HOUR)
    assert conditions(second.status)["Revoked"] == ("True", "Revoked") and second.status["crlNumber"] == 9
    assert second.issuers == frozenset() and second.revocation == first.revocation
    # and the same once the Certificate is deleted
    assert reconcile_revocation(revocation_object(status=second.status), None, lambda key: state({0x1003}, 9),
                                NOW + DAY).status == {**second.status}


def test_reconcile_revocation_problems():
    bad = reconcile_revocation(revocation_object(spec_fields={"certificateName": "a", "reason": "stolen"}), None,
                               lambda key: state(), NOW)
    assert conditions(bad.status)["Ready"] == ("False", INVALID_SPEC) and bad.revocation is None
    missing = reconcile_revocation(revocation_object(), None, lambda key: state(), NOW)
    assert conditions(missing.status)["Ready"] == ("False", CERTIFICATE_NOT_FOUND) and not missing.issuers
    self_signed = reconcile_revocation(revocation_object(), certificate_object(HISTORY),
                                       lambda key: state(kind="SelfSigned", enabled=False), NOW)
    assert conditions(self_signed.status)["Ready"] == ("False", ISSUER_CANNOT_PUBLISH_CRL)
    assert self_signed.issuers == frozenset() and self_signed.revocation is not None  # the re-issue still applies


def test_the_policy_chains_trigger():
    revocations = [revocation("keyCompromise", 5), revocation("superseded", 6, issuer=OTHER_ISSUER)]
    assert current_certificate_revocation(5, CA_ISSUER, revocations).reason == "keyCompromise"
    assert current_certificate_revocation(6, CA_ISSUER, revocations) is None
    assert current_certificate_revocation(7, CA_ISSUER, revocations) is None


def test_reconcile_crl_publishes_then_rests_then_republishes_on_change(ca):
    spec = parse_issuer_spec({"ca": {"secretName": "agents-ca", "crl": {}}})
    first = reconcile_crl(CA_ISSUER, spec, ca, None, None, None, [], NS, NOW)
    assert first.reason == "NotPublished" and first.publication is not None  # an empty CRL, at once
    assert first.condition[:2] == ("True", "Published") and first.revoked == 0
    assert first.next_update == NOW + DAY and first.recheck_at == NOW + 16 * HOUR
    configmap, status = first.publication.configmap, {"crl": first.publication.status}
    assert served_crl(configmap) == first.publication.der and CRL_CONTENT_TYPE == "application/pkix-crl"
    # a restart, or any reconcile with nothing new: no write
    rest = reconcile_crl(CA_ISSUER, spec, ca, None, configmap, status, [], NS, NOW + HOUR)
    assert rest.publication is None and rest.condition[0] == "True" and rest.recheck_at == NOW + 16 * HOUR
    assert rest.revoked == 0 and rest.next_update == NOW + DAY
    # a revocation seconds after the last CRL waits, to share the next CRL with those that follow
    early = reconcile_crl(CA_ISSUER, spec, ca, None, configmap, status, [revocation("keyCompromise", 77)],
                          NS, NOW + dt.timedelta(seconds=2))
    assert early.publication is None and early.recheck_at == NOW + MIN_PUBLISH_INTERVAL
    # a revocation: a new CRL with the next number
    changed = reconcile_crl(CA_ISSUER, spec, ca, None, configmap, status, [revocation("keyCompromise", 77)],
                            NS, NOW + HOUR)
    assert changed.reason == "EntriesChanged" and changed.publication.status["number"] == 2
    assert parse_crl(changed.publication.der).serials() == {77} and changed.revoked == 1


def test_reconcile_crl_when_it_cannot_publish(ca):
    spec = parse_issuer_spec({"ca": {"secretName": "agents-ca", "crl": {}}})
    assert reconcile_crl(CA_ISSUER, parse_issuer_spec({"ca": {"secretName": "x"}}), ca, None, None, None, [], NS,
                         NOW) == reconcile_crl(CA_ISSUER, parse_issuer_spec({"selfSigned": {}}), None, None, None,
                                               None, [], NS, NOW)
    broken = reconcile_crl(CA_ISSUER, spec, None, Problem("ErrGetKeyPair", "secret agents-ca not found"), None, None,
                           [], NS, NOW)
    assert broken.condition == ("False", "ErrGetKeyPair", "secret agents-ca not found") and broken.publication is None
    no_crl_sign = make_ca(ECDSA, usages=("cert sign", "digital signature"))
    refused = reconcile_crl(CA_ISSUER, spec, no_crl_sign, None, None, None, [], NS, NOW)
    assert refused.condition[:2] == ("False", "CRLSignNotAllowed") and refused.recheck_at == NOW + RETRY_AFTER
    issuer_status = {"conditions": [{"type": "CRLPublished", "status": "False", "reason": refused.condition[1],
                                     "message": refused.condition[2]}]}
    assert crl_condition_problem(issuer_status).reason == "CRLSignNotAllowed"
    assert crl_condition_problem({"conditions": [{"type": "CRLPublished", "status": "True"}]}) is None
