"""The parts of certmint.external.stepca that need no CA: the one-time token's claims and
signature, the request encodings, how HTTP answers map to reasons, and the shared clients.
Against a real step-ca: tests/interop/test_stepca_client.py."""
import datetime as dt
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwcrypto import jwk, jws

from certmint.external import stepca
from certmint.external.stepca import Provisioner, StepCAClient, StepCAClients, StepCAError
from certmint.pki import generate_key
from certmint.pki.csr import build_csr
from certmint.pki.types import ECDSA, CertificateTemplate, KeySpec, Subject

URL = "https://step-ca.example.test:9000"


def self_signed(name: str) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.timezone.utc)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))


ROOT = self_signed("root")
ROOT_PEM = ROOT.public_bytes(serialization.Encoding.PEM)


def provisioner() -> tuple[Provisioner, jwk.JWK]:
    key = jwk.JWK.generate(kty="EC", crv="P-256")
    kid = key.thumbprint()
    return Provisioner(name="admin", kid=kid, algorithm="ES256", _key=key), jwk.JWK(**key.export_public(as_dict=True))


def test_token_claims_as_step_ca_checks_them():
    client = StepCAClient(URL + "/", ROOT_PEM)
    handle, public = provisioner()
    csr = build_csr(CertificateTemplate(subject=Subject(common_name="api.example.test"),
                                        dns_names=("api.example.test", "api"), ip_addresses=("10.0.0.1",)),
                    generate_key(KeySpec(ECDSA, 256)))
    now = dt.datetime(2026, 1, 1, 12, 0, 0, 250_000, tzinfo=dt.timezone.utc)
    token = client.token(handle, csr, now=now)
    verified = jws.JWS()
    verified.deserialize(token, key=public)  # raises unless the provisioner's key signed it
    header = verified.jose_header
    assert header == {"alg": "ES256", "kid": handle.kid, "typ": "JWT"}
    claims = json.loads(verified.payload)
    issued = int(now.timestamp()) + 1  # rounded up, never before a CA that started this second
    assert len(claims.pop("jti")) == 64  # 32 random bytes, hex
    assert claims == {
        "iss": "admin", "sub": "api.example.test", "aud": f"{URL}/1.0/sign",
        "sans": ["api.example.test", "api", "10.0.0.1"],
        "sha": ROOT.fingerprint(hashes.SHA256()).hex(),
        "iat": issued, "nbf": issued, "exp": issued + 300,
    }


def test_token_ids_are_unique_and_subject_falls_back_to_the_first_san():
    client = StepCAClient(URL, ROOT_PEM)
    handle, _ = provisioner()
    csr = build_csr(CertificateTemplate(dns_names=("only.example.test",)), generate_key(KeySpec(ECDSA, 256)))
    claims = [json.loads(jws.JWS.from_jose_token(client.token(handle, csr)).objects["payload"]) for _ in range(20)]
    assert len({c["jti"] for c in claims}) == 20
    assert {c["sub"] for c in claims} == {"only.example.test"}


def test_time_or_duration():
    assert stepca._time_or_duration(dt.timedelta(hours=24)) == "86400s"
    assert stepca._time_or_duration(dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)) == "2026-01-02T03:04:05Z"
    with pytest.raises(ValueError):
        stepca._time_or_duration(dt.datetime(2026, 1, 2))


@pytest.mark.parametrize("status, body, reason, says", [
    (403, b'{"status":403,"message":"dns name \\"x.invalid\\" not allowed"}', stepca.REFUSED,
     'dns name "x.invalid" not allowed'),
    (401, b'{"status":401,"message":"The request lacked necessary authorization to be completed."}', stepca.REFUSED,
     "lacked necessary authorization"),
    (400, b"<html>bad</html>", stepca.REFUSED, "HTTP 400"),
    (500, b'{"message":"internal"}', stepca.SERVER_ERROR, "internal (HTTP 500)"),
    (302, b"", stepca.INVALID_RESPONSE, "HTTP 302"),
])
def test_http_errors_carry_the_cas_message(status, body, reason, says):
    error = stepca._http_error(status, body, "signing")
    assert error.reason == reason and says in error.message


def test_bad_configuration():
    with pytest.raises(ValueError, match="https"):
        StepCAClient("http://step-ca:9000", ROOT_PEM)
    with pytest.raises(StepCAError) as caught:
        StepCAClient(URL, b"no certificate here")
    assert caught.value.reason == stepca.INVALID_CA_BUNDLE


def test_fingerprint_names_the_self_signed_root_of_a_bundle():
    other = self_signed("other root")
    bundle = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (other, ROOT))
    assert StepCAClient(URL, bundle).root_fingerprint == other.fingerprint(hashes.SHA256()).hex()


def test_clients_are_shared_per_url_and_bundle():
    made = []
    clients = StepCAClients(lambda url, bundle: made.append((url, bundle)) or StepCAClient(url, bundle))
    a = clients.get(URL, ROOT_PEM)
    assert clients.get(URL + "/", ROOT_PEM) is a
    assert clients.get(URL, self_signed("x").public_bytes(serialization.Encoding.PEM)) is not a
    assert len(made) == len(clients) == 2
    clients.retain([(URL, ROOT_PEM)])  # the other bundle's issuer is gone
    assert len(clients) == 1 and clients.get(URL, ROOT_PEM) is a
    clients.close()
    assert len(clients) == 0


def test_provisioner_hides_its_key():
    handle, _ = provisioner()
    private = handle._key.export_private(as_dict=True)["d"]
    assert private not in repr(handle) and private not in str(handle)
    # the kid is the key's thumbprint, so name and kid identify a handle; the key is not compared
    assert handle == Provisioner(name=handle.name, kid=handle.kid, algorithm="ES256", _key=jwk.JWK.generate(kty="EC"))
