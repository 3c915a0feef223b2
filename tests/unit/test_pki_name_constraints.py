"""check_name_constraints: RFC 5280 subtree matching for DNS names, IPs, emails and URIs."""
from __future__ import annotations

import datetime as dt
import functools

import pytest

from certmint.pki import (
    ECDSA,
    CASigner,
    CertificateTemplate,
    KeySpec,
    NameConstraints,
    Subject,
    check_name_constraints,
    generate_key,
    issue,
)

NOW = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)


@functools.cache
def ca_key():
    return generate_key(KeySpec(ECDSA, 256))


def constrained_ca(constraints: NameConstraints | None, name: str = "constrained",
                   parent: CASigner | None = None) -> CASigner:
    template = CertificateTemplate(subject=Subject(common_name=name), is_ca=True, name_constraints=constraints)
    certificate = issue(template, ca_key(), parent, NOW).certificate
    return CASigner(certificate, ca_key(), (parent.certificate, *parent.chain) if parent else ())


def allowed(constraints: NameConstraints, **names: tuple[str, ...]) -> bool:
    return check_name_constraints(constrained_ca(constraints), CertificateTemplate(**names)) == []


@pytest.mark.parametrize("constraint,name,ok", [
    ("example.com", "example.com", True),
    ("example.com", "www.example.com", True),
    ("example.com", "*.example.com", True),
    ("example.com", "WWW.Example.COM", True),
    ("example.com", "badexample.com", False),
    ("example.com", "example.org", False),
    (".example.com", "www.example.com", True),
    (".example.com", "example.com", False),
])
def test_permitted_dns(constraint, name, ok):
    assert allowed(NameConstraints(permitted_dns=(constraint,)), dns_names=(name,)) is ok


@pytest.mark.parametrize("name,ok", [("internal.example.com", False), ("a.internal.example.com", False),
                                     ("example.com", True), ("notinternal.example.com", True)])
def test_excluded_dns(name, ok):
    assert allowed(NameConstraints(excluded_dns=("internal.example.com",)), dns_names=(name,)) is ok


@pytest.mark.parametrize("ranges,ip,ok", [
    (("10.0.0.0/8",), "10.1.2.3", True),
    (("10.0.0.0/8",), "11.0.0.1", False),
    (("10.0.0.0/8",), "::1", False),  # an IPv6 address is in no IPv4 range
    (("10.0.0.0/8", "2001:db8::/32"), "2001:db8::1", True),
    (("10.1.2.3/8",), "10.9.9.9", True),  # host bits are masked, as Go's net.ParseCIDR does
])
def test_permitted_ip_ranges(ranges, ip, ok):
    assert allowed(NameConstraints(permitted_ip_ranges=ranges), ip_addresses=(ip,)) is ok


def test_excluded_ip_range():
    constraints = NameConstraints(excluded_ip_ranges=("192.168.0.0/16",))
    assert not allowed(constraints, ip_addresses=("192.168.1.1",))
    assert allowed(constraints, ip_addresses=("192.169.0.1",))


@pytest.mark.parametrize("constraint,email,ok", [
    ("example.com", "a@example.com", True),
    ("example.com", "a@sub.example.com", False),
    (".example.com", "a@sub.example.com", True),
    (".example.com", "a@example.com", False),
    ("boss@example.com", "boss@example.com", True),
    ("boss@example.com", "intern@example.com", False),
])
def test_permitted_emails(constraint, email, ok):
    assert allowed(NameConstraints(permitted_emails=(constraint,)), email_addresses=(email,)) is ok


@pytest.mark.parametrize("constraint,uri,ok", [
    ("cluster.local", "spiffe://cluster.local/ns/default/sa/app", True),
    ("cluster.local", "spiffe://prod.cluster.local/ns/default/sa/app", False),
    (".cluster.local", "spiffe://prod.cluster.local/ns/default/sa/app", True),
    (".cluster.local", "spiffe://cluster.local/ns/default/sa/app", False),
    ("example.com", "https://EXAMPLE.com:8443/path", True),
    ("example.com", "urn:example.com", False),  # no host to match
])
def test_permitted_uri_domains(constraint, uri, ok):
    assert allowed(NameConstraints(permitted_uri_domains=(constraint,)), uris=(uri,)) is ok


def test_excluded_uri_domain():
    constraints = NameConstraints(excluded_uri_domains=(".evil.example",))
    assert not allowed(constraints, uris=("spiffe://a.evil.example/x",))
    assert allowed(constraints, uris=("spiffe://good.example/x",))


def test_constraints_of_one_kind_leave_other_kinds_free():
    assert allowed(NameConstraints(permitted_dns=("example.com",)),
                   ip_addresses=("8.8.8.8",), email_addresses=("a@b.c",), uris=("spiffe://x/y",))


def test_excluded_wins_over_permitted():
    constraints = NameConstraints(permitted_dns=("example.com",), excluded_dns=("secret.example.com",))
    assert allowed(constraints, dns_names=("www.example.com",))
    assert not allowed(constraints, dns_names=("db.secret.example.com",))


def test_every_violation_is_reported_and_names_the_ca():
    constraints = NameConstraints(permitted_dns=("example.com",), excluded_ip_ranges=("10.0.0.0/8",))
    template = CertificateTemplate(dns_names=("ok.example.com", "bad.org"), ip_addresses=("10.0.0.1",))
    assert check_name_constraints(constrained_ca(constraints), template) == [
        "DNS name bad.org is not permitted by the name constraints of CA CN=constrained",
        "IP address 10.0.0.1 is excluded by the name constraints of CA CN=constrained",
    ]


def test_constraints_of_a_ca_higher_up_apply():
    root = constrained_ca(NameConstraints(permitted_dns=("example.com",)), name="root")
    intermediate = constrained_ca(None, name="intermediate", parent=root)
    assert check_name_constraints(intermediate, CertificateTemplate(dns_names=("example.org",))) == [
        "DNS name example.org is not permitted by the name constraints of CA CN=root"]


def test_no_constraints_no_violations():
    assert check_name_constraints(constrained_ca(None), CertificateTemplate(dns_names=("anything.test",))) == []
