"""parse_certificate_spec applies cert-manager's defaults and refuses what cannot be
issued; renewal_time follows cert-manager's rules on the issued certificate's dates."""
import copy
import dataclasses
import datetime as dt

import pytest

from certmint.model import (
    CertificateSpec,
    IssuerRef,
    JksKeystore,
    Pkcs12Keystore,
    SpecError,
    parse_certificate_spec,
    renewal_time,
)
from certmint.model.certificate import KEY_USAGES
from certmint.pki.types import ECDSA, ED25519, PKCS1, PKCS8, RSA, KeySpec, NameConstraints, Subject

H = dt.timedelta(hours=1)
UTC = dt.timezone.utc


def spec(**fields):
    base = {"secretName": "web-tls", "issuerRef": {"name": "ca"}, "dnsNames": ["web.example.com"]}
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


def error_of(**fields) -> str:
    with pytest.raises(SpecError) as info:
        parse_certificate_spec(spec(**fields))
    return str(info.value)


# ------------------------------------------------------------------ defaults


def test_minimal_spec_gets_cert_managers_defaults():
    parsed = parse_certificate_spec(spec())
    assert parsed.secret_name == "web-tls"
    assert parsed.issuer_ref == IssuerRef(name="ca", kind="Issuer", group="certmint.io")
    assert parsed.issuer_ref.namespaced
    t = parsed.template
    assert t.duration == 2160 * H
    assert parsed.duration == 2160 * H
    assert t.usages == ("digital signature", "key encipherment")
    assert t.key == KeySpec(algorithm=RSA, size=2048, encoding=PKCS1)
    assert t.is_ca is False
    assert t.name_constraints is None
    assert t.subject == Subject()
    assert t.dns_names == ("web.example.com",)
    assert parsed.rotation_policy == "Always"
    assert parsed.renew_before is None and parsed.renew_before_percentage is None
    assert parsed.secret_labels == {} and parsed.secret_annotations == {}
    assert parsed.additional_output_formats == ()
    assert parsed.pkcs12 is None and parsed.jks is None
    assert parsed.revision_history_limit is None
    assert parsed.usages_defaulted


@pytest.mark.parametrize("private_key,is_ca,usages", [
    ({"algorithm": "RSA"}, False, ("digital signature", "key encipherment")),
    ({"algorithm": "RSA"}, True, ("digital signature", "cert sign")),  # RFC 3279: a CA key does not encipher
    ({"algorithm": "ECDSA"}, False, ("digital signature",)),
    ({"algorithm": "ECDSA", "size": 384}, True, ("digital signature", "cert sign")),
    ({"algorithm": "Ed25519"}, False, ("digital signature",)),
    ({"algorithm": "Ed25519"}, True, ("digital signature", "cert sign")),
])
def test_default_usages_depend_on_the_key(private_key, is_ca, usages):
    """Key encipherment is RSA key transport: ECDSA (RFC 8813) and Ed25519 (RFC 8410) keys must not have it,
    and RFC 3279 recommends against it for an RSA key that signs certificates."""
    parsed = parse_certificate_spec(spec(privateKey=private_key, isCA=is_ca))
    assert parsed.template.usages == usages and parsed.usages_defaulted


def test_written_usages_are_not_defaulted():
    parsed = parse_certificate_spec(spec(privateKey={"algorithm": "ECDSA"}, usages=["digital signature"]))
    assert parsed.template.usages == ("digital signature",) and not parsed.usages_defaulted


def test_full_spec_is_read():
    full = spec(
        commonName="web",
        dnsNames=["web.example.com", "*.web.example.com"],
        ipAddresses=["10.0.0.1", "2001:DB8:0:0::1"],
        uris=["spiffe://cluster.local/ns/default/sa/web"],
        emailAddresses=["ops@example.com"],
        subject={
            "organizations": ["Example"],
            "countries": ["NL"],
            "organizationalUnits": ["Web"],
            "localities": ["Amsterdam"],
            "provinces": ["NH"],
            "streetAddresses": ["Main 1"],
            "postalCodes": ["1000AA"],
            "serialNumber": "42",
        },
        duration="8760h",
        renewBefore="720h",
        usages=["server auth", "client auth"],
        privateKey={"algorithm": "ECDSA", "size": 384, "encoding": "PKCS8", "rotationPolicy": "Never"},
        secretTemplate={"labels": {"app": "web"}, "annotations": {"team": "ops"}},
        additionalOutputFormats=[{"type": "DER"}, {"type": "CombinedPEM"}],
        keystores={
            "pkcs12": {"create": True, "passwordSecretRef": {"name": "p12-pass", "key": "password"}},
            "jks": {"create": False, "passwordSecretRef": {"name": "jks-pass", "key": "pw"}, "alias": "web"},
        },
        revisionHistoryLimit=3,
        issuerRef={"name": "root", "kind": "ClusterIssuer", "group": "certmint.io"},
    )
    parsed = parse_certificate_spec(full)
    t = parsed.template
    assert parsed.issuer_ref == IssuerRef("root", "ClusterIssuer", "certmint.io")
    assert not parsed.issuer_ref.namespaced
    assert t.subject == Subject(
        common_name="web",
        organizations=("Example",),
        organizational_units=("Web",),
        countries=("NL",),
        provinces=("NH",),
        localities=("Amsterdam",),
        street_addresses=("Main 1",),
        postal_codes=("1000AA",),
        serial_number="42",
    )
    assert t.dns_names == ("web.example.com", "*.web.example.com")
    assert t.ip_addresses == ("10.0.0.1", "2001:db8::1")  # compressed, as IssuedCertificate has them
    assert t.uris == ("spiffe://cluster.local/ns/default/sa/web",)
    assert t.email_addresses == ("ops@example.com",)
    assert t.duration == 8760 * H
    assert parsed.renew_before == 720 * H
    assert t.usages == ("server auth", "client auth")
    assert t.key == KeySpec(ECDSA, 384, PKCS8)
    assert parsed.rotation_policy == "Never"
    assert parsed.secret_labels == {"app": "web"}
    assert parsed.secret_annotations == {"team": "ops"}
    assert parsed.additional_output_formats == ("DER", "CombinedPEM")
    assert parsed.pkcs12 == Pkcs12Keystore(True, "p12-pass", "password", "LegacyRC2")
    assert parsed.jks == JksKeystore(False, "jks-pass", "pw", "web")
    assert parsed.revision_history_limit == 3


def test_input_is_not_modified_and_maps_are_copies():
    original = spec(secretTemplate={"labels": {"a": "b"}})
    before = copy.deepcopy(original)
    parsed = parse_certificate_spec(original)
    assert original == before
    parsed.secret_labels["x"] = "y"
    assert original["secretTemplate"]["labels"] == {"a": "b"}


def test_results_are_frozen():
    parsed = parse_certificate_spec(spec())
    with pytest.raises(dataclasses.FrozenInstanceError):
        parsed.secret_name = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        parsed.issuer_ref.kind = "ClusterIssuer"  # type: ignore[misc]


def test_nulls_count_as_absent():
    parsed = parse_certificate_spec(spec(isCA=None, duration=None) | {"usages": None, "privateKey": None})
    assert parsed.template.is_ca is False
    assert parsed.template.duration == 2160 * H


# ------------------------------------------------------------------ issuerRef


@pytest.mark.parametrize("group", [None, "", "certmint.io", "cert-manager.io"])
def test_issuer_group_aliases(group):
    ref = {"name": "ca", "kind": "ClusterIssuer"} | ({} if group is None else {"group": group})
    assert parse_certificate_spec(spec(issuerRef=ref)).issuer_ref == IssuerRef("ca", "ClusterIssuer", "certmint.io")


def test_foreign_issuer_group_is_refused():
    assert 'issuerRef.group "awspca.cert-manager.io" is not served' in error_of(
        issuerRef={"name": "pca", "kind": "Issuer", "group": "awspca.cert-manager.io"}
    )


def test_unknown_issuer_kind_is_refused():
    assert 'issuerRef.kind must be Issuer or ClusterIssuer, got "StepClusterIssuer"' in error_of(
        issuerRef={"name": "step", "kind": "StepClusterIssuer"}
    )


@pytest.mark.parametrize("ref, message", [(None, "issuerRef is required"), ({}, "issuerRef.name is required")])
def test_issuer_ref_required(ref, message):
    fields = spec()
    if ref is None:
        del fields["issuerRef"]
    else:
        fields["issuerRef"] = ref
    with pytest.raises(SpecError, match=message):
        parse_certificate_spec(fields)


# ------------------------------------------------------------------ names


def test_a_name_is_required():
    message = error_of(dnsNames=[], subject={"organizations": ["Example"]})
    assert message == "at least one of commonName, dnsNames, ipAddresses, uris, emailAddresses is required"


def test_empty_common_name_is_no_name():
    assert "at least one of" in error_of(dnsNames=None, commonName="")


@pytest.mark.parametrize(
    "fields",
    [
        {"commonName": "web"},
        {"ipAddresses": ["127.0.0.1"]},
        {"uris": ["spiffe://td/web"]},
        {"emailAddresses": ["a@example.com"]},
    ],
)
def test_any_single_name_is_enough(fields):
    parse_certificate_spec(spec(dnsNames=None, **fields))


def test_common_name_at_most_64():
    parse_certificate_spec(spec(commonName="a" * 64))
    assert "commonName must be at most 64 characters, got 65" in error_of(commonName="a" * 65)


@pytest.mark.parametrize("ip", ["1.2.3", "256.1.1.1", "10.0.0.1/8", "fe80::1%eth0", "01.2.3.4", "example.com"])
def test_bad_ip_addresses(ip):
    assert f'ipAddresses[1]: "{ip}" is not a valid IP address' in error_of(ipAddresses=["10.0.0.1", ip])


@pytest.mark.parametrize("email", ["ops", "Ops <ops@example.com>", "a@b@c", "a b@example.com"])
def test_bad_email_addresses(email):
    assert "is not a plain email address" in error_of(emailAddresses=[email])


@pytest.mark.parametrize("uri", ["web", "/path/only", ""])
def test_uris_must_be_absolute(uri):
    assert "is not an absolute URI" in error_of(uris=[uri])


@pytest.mark.parametrize("name", ["Web-TLS", "web_tls", "-web", "a" * 254, "web.", ""])
def test_secret_name_must_be_a_valid_name(name):
    message = error_of(secretName=name)
    assert "secretName" in message


# ------------------------------------------------------------------ durations


def test_duration_minimum_is_one_hour():
    assert parse_certificate_spec(spec(duration="1h")).template.duration == H
    assert parse_certificate_spec(spec(duration="60m")).template.duration == H
    assert error_of(duration="59m50s") == "duration must be at least 1h, got 59m50s"


@pytest.mark.parametrize("text", ["90d", "1", "1h30", "soon"])
def test_duration_format(text):
    assert error_of(duration=text).startswith(f"duration: invalid duration '{text}'")


@pytest.mark.parametrize("text, expected", [("1.5h", 1.5 * H), ("90m", 1.5 * H), ("24h", 24 * H)])
def test_duration_forms(text, expected):
    assert parse_certificate_spec(spec(duration=text)).template.duration == expected


def test_renew_before_must_be_shorter_than_duration():
    assert error_of(duration="24h", renewBefore="24h") == "renewBefore (24h) must be shorter than duration (24h)"
    assert parse_certificate_spec(spec(duration="24h", renewBefore="23h59m")).renew_before == 23 * H + dt.timedelta(
        minutes=59
    )


def test_renew_before_is_checked_against_the_default_duration():
    assert "must be shorter than duration (2160h0m0s)" in error_of(renewBefore="2160h")


def test_renew_before_minimum_is_five_minutes():
    assert error_of(renewBefore="4m") == "renewBefore must be at least 5m, got 4m"
    assert parse_certificate_spec(spec(renewBefore="5m")).renew_before == dt.timedelta(minutes=5)


def test_renew_before_and_percentage_exclude_each_other():
    assert "cannot both be set" in error_of(renewBefore="720h", renewBeforePercentage=25)


@pytest.mark.parametrize("value", [0, 100, -5])
def test_renew_before_percentage_range(value):
    assert "between 1 and 99" in error_of(renewBeforePercentage=value)


@pytest.mark.parametrize("value", [1, 50, 99])
def test_renew_before_percentage_kept(value):
    assert parse_certificate_spec(spec(renewBeforePercentage=value)).renew_before_percentage == value


# ------------------------------------------------------------------ usages and CA


def test_is_ca_adds_cert_sign_once():
    assert parse_certificate_spec(spec(isCA=True)).template.usages == ("digital signature", "cert sign")
    parsed = parse_certificate_spec(spec(isCA=True, usages=["cert sign", "crl sign"]))
    assert parsed.template.usages == ("cert sign", "crl sign")
    assert parsed.template.is_ca


def test_usage_aliases_become_canonical_and_duplicates_go():
    parsed = parse_certificate_spec(spec(usages=["signing", "digital signature", "s/mime", "server auth"]))
    assert parsed.template.usages == ("digital signature", "email protection", "server auth")


def test_every_cert_manager_usage_is_accepted():
    assert len(KEY_USAGES) == 23
    parse_certificate_spec(spec(usages=list(KEY_USAGES)))


def test_unknown_usage():
    assert 'usages[1]: unknown usage "web server"' in error_of(usages=["server auth", "web server"])


# ------------------------------------------------------------------ private key


@pytest.mark.parametrize(
    "private_key, expected",
    [
        ({}, KeySpec(RSA, 2048, PKCS1)),
        ({"algorithm": "RSA"}, KeySpec(RSA, 2048, PKCS1)),
        ({"size": 4096}, KeySpec(RSA, 4096, PKCS1)),
        ({"algorithm": "RSA", "size": 3072, "encoding": "PKCS8"}, KeySpec(RSA, 3072, PKCS8)),
        ({"algorithm": "RSA", "size": 8192}, KeySpec(RSA, 8192, PKCS1)),
        ({"algorithm": "RSA", "size": 0}, KeySpec(RSA, 2048, PKCS1)),
        ({"algorithm": "ECDSA"}, KeySpec(ECDSA, 256, PKCS1)),
        ({"algorithm": "ECDSA", "size": 521}, KeySpec(ECDSA, 521, PKCS1)),
        ({"algorithm": "Ed25519"}, KeySpec(ED25519, None, PKCS8)),
        ({"algorithm": "Ed25519", "size": 256, "encoding": "PKCS1"}, KeySpec(ED25519, None, PKCS8)),
    ],
)
def test_private_key_defaults(private_key, expected):
    assert parse_certificate_spec(spec(privateKey=private_key)).template.key == expected


@pytest.mark.parametrize(
    "private_key, message",
    [
        ({"size": 1024}, "RSA keys must be 2048, 3072, 4096 or 8192 bits, got 1024"),
        ({"algorithm": "RSA", "size": 2049}, "got 2049"),
        ({"algorithm": "ECDSA", "size": 255}, "ECDSA keys must be 256, 384 or 521 bits, got 255"),
        ({"algorithm": "ECDSA", "size": 2048}, "got 2048"),
        ({"algorithm": "DSA"}, 'privateKey.algorithm must be RSA, ECDSA or Ed25519, got "DSA"'),
        ({"algorithm": "rsa"}, "got \"rsa\""),
        ({"encoding": "DER"}, "privateKey.encoding must be PKCS1 or PKCS8"),
        ({"rotationPolicy": "Sometimes"}, "privateKey.rotationPolicy must be Always or Never"),
        ({"size": "2048"}, "privateKey.size must be an integer"),
    ],
)
def test_private_key_errors(private_key, message):
    assert message in error_of(privateKey=private_key)


# ------------------------------------------------------------------ name constraints


def test_name_constraints_need_is_ca():
    message = error_of(nameConstraints={"permitted": {"dnsDomains": ["example.com"]}})
    assert message == "nameConstraints can only be set on a CA certificate (isCA: true)"


def test_name_constraints_need_permitted_or_excluded():
    assert "needs permitted or excluded" in error_of(isCA=True, nameConstraints={"critical": True})


def test_name_constraints_are_read():
    parsed = parse_certificate_spec(
        spec(
            isCA=True,
            nameConstraints={
                "critical": True,
                "permitted": {
                    "dnsDomains": ["example.com"],
                    "ipRanges": ["10.1.2.3/8", "2001:db8::/32"],
                    "emailAddresses": ["example.com"],
                    "uriDomains": [".example.com"],
                },
                "excluded": {"dnsDomains": ["bad.example.com"], "ipRanges": ["192.168.0.0/16"]},
            },
        )
    )
    assert parsed.template.name_constraints == NameConstraints(
        critical=True,
        permitted_dns=("example.com",),
        permitted_ip_ranges=("10.0.0.0/8", "2001:db8::/32"),
        permitted_emails=("example.com",),
        permitted_uri_domains=(".example.com",),
        excluded_dns=("bad.example.com",),
        excluded_ip_ranges=("192.168.0.0/16",),
    )


def test_name_constraints_bad_cidr():
    message = error_of(isCA=True, nameConstraints={"excluded": {"ipRanges": ["10.0.0.0/33"]}})
    assert 'nameConstraints.excluded.ipRanges[0]: "10.0.0.0/33" is not a valid CIDR range' in message


# ------------------------------------------------------------------ secret, keystores, output


def test_reserved_annotations_are_refused():
    message = error_of(secretTemplate={"annotations": {"certmint.io/issuer-name": "x"}})
    assert '"certmint.io/issuer-name" is reserved' in message


def test_cert_manager_annotations_are_allowed():
    parsed = parse_certificate_spec(spec(secretTemplate={"annotations": {"cert-manager.io/allow-direct-injection": "true"}}))
    assert parsed.secret_annotations == {"cert-manager.io/allow-direct-injection": "true"}


def test_output_formats_without_duplicates():
    parsed = parse_certificate_spec(spec(additionalOutputFormats=[{"type": "DER"}, {"type": "DER"}]))
    assert parsed.additional_output_formats == ("DER",)
    assert "must be DER or CombinedPEM" in error_of(additionalOutputFormats=[{"type": "PFX"}])


def test_pkcs12_profile_and_password_ref():
    parsed = parse_certificate_spec(
        spec(keystores={"pkcs12": {"create": True, "passwordSecretRef": {"name": "p", "key": "k"}, "profile": "Modern2023"}})
    )
    assert parsed.pkcs12 == Pkcs12Keystore(True, "p", "k", "Modern2023")
    assert "keystores.pkcs12.passwordSecretRef needs the name and key" in error_of(
        keystores={"pkcs12": {"create": True, "passwordSecretRef": {"name": "p"}}}
    )
    assert "keystores.pkcs12.profile must be one of" in error_of(
        keystores={"pkcs12": {"create": True, "passwordSecretRef": {"name": "p", "key": "k"}, "profile": "AES"}}
    )


def test_jks_keystores_are_refused_with_a_pointer_to_pkcs12():
    with pytest.raises(SpecError, match="JKS keystores are not supported: use keystores.pkcs12"):
        parse_certificate_spec(spec(keystores={"jks": {"create": True, "passwordSecretRef": {"name": "p", "key": "k"}}}))


def test_jks_defaults_alias():
    parsed = parse_certificate_spec(spec(keystores={"jks": {"create": False, "passwordSecretRef": {"name": "p", "key": "k"}}}))
    assert parsed.jks == JksKeystore(False, "p", "k", "certificate")


def test_revision_history_limit_at_least_one():
    assert "revisionHistoryLimit must be at least 1, got 0" in error_of(revisionHistoryLimit=0)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"dnsNames": "web.example.com"}, "dnsNames must be a list of strings, not a string"),
        ({"dnsNames": ["a", 1]}, "dnsNames[1] must be a string"),
        ({"isCA": "true"}, "isCA must be true or false, not a string"),
        ({"subject": ["Example"]}, "subject must be an object, not a list"),
        ({"duration": 3600}, "duration must be a string"),
        ({"secretTemplate": {"labels": {"a": 1}}}, "secretTemplate.labels['a'] must be a string"),
    ],
)
def test_wrong_types_name_the_field(fields, message):
    assert message in error_of(**fields)


def test_spec_must_be_a_mapping():
    with pytest.raises(SpecError):
        parse_certificate_spec(["not", "a", "spec"])  # type: ignore[arg-type]


def test_spec_error_is_a_value_error():
    assert issubclass(SpecError, ValueError)


# ------------------------------------------------------------------ renewal_time

NOT_BEFORE = dt.datetime(2025, 1, 1, tzinfo=UTC)


def renewal(lifetime: dt.timedelta, **fields) -> dt.datetime:
    parsed = parse_certificate_spec(spec(**fields))
    return renewal_time(NOT_BEFORE, NOT_BEFORE + lifetime, parsed)


def test_default_renews_two_thirds_through():
    assert renewal(90 * 24 * H) == NOT_BEFORE + 60 * 24 * H


def test_renew_before():
    assert renewal(90 * 24 * H, renewBefore="720h") == NOT_BEFORE + 60 * 24 * H
    assert renewal(90 * 24 * H, renewBefore="1h") == NOT_BEFORE + 90 * 24 * H - H


def test_renew_before_percentage_of_the_real_lifetime():
    assert renewal(100 * H, renewBeforePercentage=25) == NOT_BEFORE + 75 * H
    assert renewal(100 * H, renewBeforePercentage=99) == NOT_BEFORE + H


def test_lifetime_is_the_issued_one_not_the_requested_one():
    # Asked for 90 days and renewal 30 days before; the issuer clamped to 10 days:
    # renewBefore >= lifetime, so renewal falls back to 2/3 of the real lifetime.
    assert renewal(240 * H, duration="2160h", renewBefore="720h") == NOT_BEFORE + 160 * H
    # Percentage applies to the real lifetime as well.
    assert renewal(240 * H, duration="2160h", renewBeforePercentage=50) == NOT_BEFORE + 120 * H


def test_renew_before_equal_to_lifetime_falls_back():
    assert renewal(24 * H, duration="48h", renewBefore="24h") == NOT_BEFORE + 16 * H


def test_renewal_time_is_truncated_to_the_second():
    # 1h / 3 = 20m exactly; 1h1s / 3 = 20m0.333s: renewal at 40m0.666s -> 40m0s.
    assert renewal(H + dt.timedelta(seconds=1), duration="1h") == NOT_BEFORE + dt.timedelta(minutes=40)
    not_before = NOT_BEFORE + dt.timedelta(microseconds=700_000)
    result = renewal_time(not_before, not_before + 3 * H, parse_certificate_spec(spec()))
    assert result == NOT_BEFORE + 2 * H and result.microsecond == 0
    assert result.tzinfo is UTC


def test_renewal_time_accepts_any_object_with_the_renewal_fields():
    parsed = parse_certificate_spec(spec(renewBefore="2h"))
    assert isinstance(parsed, CertificateSpec)
    other = dataclasses.replace(parsed, renew_before=None, renew_before_percentage=10)
    assert renewal_time(NOT_BEFORE, NOT_BEFORE + 10 * H, other) == NOT_BEFORE + 9 * H
