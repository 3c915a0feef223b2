"""parse_issuer_spec: exactly one of selfSigned or ca."""
import pytest

from certmint.model import IssuerSpec, SpecError, parse_issuer_spec
from certmint.model.issuer import CA, SELF_SIGNED


def test_self_signed():
    assert parse_issuer_spec({"selfSigned": {}}) == IssuerSpec(kind=SELF_SIGNED)
    assert parse_issuer_spec({"selfSigned": {"crlDistributionPoints": ["http://crl.example/ca.crl"]}}) == IssuerSpec(
        kind="SelfSigned", crl_distribution_points=("http://crl.example/ca.crl",)
    )


def test_ca():
    parsed = parse_issuer_spec(
        {
            "ca": {
                "secretName": "root-ca",
                "crlDistributionPoints": ["http://crl.example/root.crl"],
                "ocspServers": ["http://ocsp.example"],
                "issuingCertificateURLs": ["http://certs.example/root.crt"],
            }
        }
    )
    assert parsed == IssuerSpec(
        kind=CA,
        ca_secret_name="root-ca",
        crl_distribution_points=("http://crl.example/root.crl",),
        ocsp_servers=("http://ocsp.example",),
        issuing_certificate_urls=("http://certs.example/root.crt",),
    )
    assert parsed.kind == "CA"


@pytest.mark.parametrize("spec", [{}, {"selfSigned": None}, {"acme": {"server": "https://acme.example"}}])
def test_neither(spec):
    with pytest.raises(SpecError, match="exactly one of selfSigned or ca must be set"):
        parse_issuer_spec(spec)


def test_both():
    with pytest.raises(SpecError, match="not both"):
        parse_issuer_spec({"selfSigned": {}, "ca": {"secretName": "x"}})


@pytest.mark.parametrize("ca, message", [({}, "ca.secretName is required"), ({"secretName": "Root_CA"}, "not a valid Secret name")])
def test_ca_secret_name(ca, message):
    with pytest.raises(SpecError, match=message):
        parse_issuer_spec({"ca": ca})


def test_wrong_types():
    with pytest.raises(SpecError, match="selfSigned must be an object"):
        parse_issuer_spec({"selfSigned": True})
    with pytest.raises(SpecError, match="ca.ocspServers must be a list of strings"):
        parse_issuer_spec({"ca": {"secretName": "x", "ocspServers": "http://ocsp"}})
    with pytest.raises(SpecError):
        parse_issuer_spec(None)  # type: ignore[arg-type]
