"""parse_issuer_spec: exactly one of selfSigned, ca or step."""
import base64
import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from certmint.model import IssuerSpec, SpecError, parse_issuer_spec
from certmint.model.issuer import CA, SELF_SIGNED, STEP, StepSpec


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
    with pytest.raises(SpecError, match="exactly one of selfSigned, ca or step must be set"):
        parse_issuer_spec(spec)


def test_both():
    with pytest.raises(SpecError, match="not selfSigned and ca"):
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


# ------------------------------------------------------------------ step


def _root_pem() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "step root")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


ROOT_PEM = _root_pem()


def step_spec(**overrides):
    """A StepIssuer's spec as step-issuer documents it."""
    spec = {
        "url": "https://step-ca.step.svc.cluster.local:9000",
        "caBundle": base64.b64encode(ROOT_PEM).decode(),
        "provisioner": {"name": "admin", "kid": "RaRoHSY9StTcqydTqenQwGQxHTA0-t2802O8evlOOeY",
                        "passwordRef": {"name": "step-ca-secrets", "key": "provisioner-password"}},
    }
    spec.update(overrides)
    return {"step": spec}


def test_step():
    parsed = parse_issuer_spec(step_spec())
    assert parsed.kind == STEP == "Step"
    assert parsed.step == StepSpec(
        url="https://step-ca.step.svc.cluster.local:9000",
        ca_bundle=ROOT_PEM,
        provisioner_name="admin",
        provisioner_kid="RaRoHSY9StTcqydTqenQwGQxHTA0-t2802O8evlOOeY",
        password_secret_name="step-ca-secrets",
        password_secret_key="provisioner-password",
    )
    assert "BEGIN CERTIFICATE" not in repr(parsed)  # the bundle is data, not something to print


@pytest.mark.parametrize("other", [{"selfSigned": {}}, {"ca": {"secretName": "root"}}])
def test_step_and_another_type(other):
    with pytest.raises(SpecError, match="exactly one of selfSigned, ca or step must be set, not "):
        parse_issuer_spec({**step_spec(), **other})


@pytest.mark.parametrize("overrides, message", [
    ({"url": None}, "step.url is required"),
    ({"url": "http://step-ca:9000"}, "is not an https:// URL"),
    ({"url": "https://"}, "is not an https:// URL"),
    ({"caBundle": None}, "step.caBundle is required"),
    ({"caBundle": "not base64!"}, "not valid base64"),
    ({"caBundle": base64.b64encode(b"just text").decode()}, "does not hold a PEM certificate"),
    ({"provisioner": None}, "step.provisioner is required"),
    ({"provisioner": {"name": "admin", "passwordRef": {"name": "p", "key": "k"}}}, "kid are required"),
    ({"provisioner": {"name": "admin", "kid": "k"}}, "passwordRef is required"),
    ({"provisioner": {"name": "admin", "kid": "k", "passwordRef": {"name": "Bad_Name", "key": "k"}}},
     "not a valid Secret name"),
    ({"provisioner": {"name": "admin", "kid": "k", "passwordRef": {"name": "p"}}}, "not a valid Secret key"),
    ({"provisioner": {"name": "admin", "kid": "k", "passwordRef": {"name": "p", "key": "a/b"}}},
     "not a valid Secret key"),
])
def test_step_incomplete(overrides, message):
    with pytest.raises(SpecError, match=message):
        parse_issuer_spec(step_spec(**overrides))
