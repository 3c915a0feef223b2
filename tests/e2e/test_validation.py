"""The CRDs validate on their own: `kubectl apply` of a bad Certificate, Issuer or
ClusterIssuer fails against a real API server with a message a user understands, and
good manifests (including ones ported from cert-manager) are stored exactly as written.

No operator runs here: everything is the API server applying crds/*.yaml (schema + CEL).
"""
from __future__ import annotations

import json

import pytest

DNS = ["web.example.com"]


def certificate(name: str = "web", **spec) -> dict:
    """A valid Certificate; keyword arguments replace spec fields (None removes one)."""
    body = {"secretName": "web-tls", "issuerRef": {"name": "ca"}, "dnsNames": DNS}
    body.update(spec)
    body = {k: v for k, v in body.items() if v is not None}
    return {"apiVersion": "certmint.io/v1", "kind": "Certificate", "metadata": {"name": name}, "spec": body}


def issuer(spec, kind: str = "Issuer", name: str = "issuer") -> dict:
    obj = {"apiVersion": "certmint.io/v1", "kind": kind, "metadata": {"name": name}}
    if spec is not None:
        obj["spec"] = spec
    return obj


def apply(kubectl, namespace: str, obj: dict):
    # JSON is YAML, and spares the table YAML's surprises ("y" read as a boolean, ...).
    return kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(obj), check=False)


# (id, manifest, fragments that must all appear in kubectl's stderr)
BAD = [
    (
        "no-name-at-all",
        certificate(dnsNames=None),
        ["at least one of commonName, dnsNames, ipAddresses, uris, emailAddresses is required"],
    ),
    (
        "subject-is-not-a-name",
        certificate(dnsNames=[], subject={"organizations": ["Example"]}),
        ["at least one of commonName, dnsNames, ipAddresses, uris, emailAddresses is required"],
    ),
    (
        "malformed-ip",
        certificate(ipAddresses=["10.0.0.1", "10.0.0.256"]),
        ["spec.ipAddresses[1]", '"10.0.0.256" is not a valid IP address'],
    ),
    ("ip-with-leading-zero", certificate(ipAddresses=["010.0.0.1"]), ['"010.0.0.1" is not a valid IP address']),
    ("ip-is-a-cidr", certificate(ipAddresses=["10.0.0.0/8"]), ['"10.0.0.0/8" is not a valid IP address']),
    ("duration-under-1h", certificate(duration="59m50s"), ["duration must be at least 1h, got 59m50s"]),
    ("duration-zero", certificate(duration="0"), ["duration must be at least 1h, got 0"]),
    (
        "duration-in-days",
        certificate(duration="90d"),
        ['duration "90d" is not a valid duration: write it like 2160h, 1h30m or 90m'],
    ),
    ("duration-without-unit", certificate(duration="3600"), ['duration "3600" is not a valid duration']),
    ("duration-negative", certificate(duration="-1h"), ['duration "-1h" is not a valid duration']),
    ("duration-overflows", certificate(duration="99999999h"), ['duration "99999999h" is not a valid duration']),
    ("renew-before-format", certificate(renewBefore="30 days"), ['renewBefore "30 days" is not a valid duration']),
    (
        "renew-before-equals-duration",
        certificate(duration="24h", renewBefore="24h"),
        ["spec.renewBefore", "renewBefore (24h) must be shorter than duration (24h)"],
    ),
    (
        "renew-before-longer-than-duration",
        certificate(duration="1h30m", renewBefore="2h"),
        ["renewBefore (2h) must be shorter than duration (1h30m)"],
    ),
    (
        "renew-before-vs-default-duration",
        certificate(renewBefore="2160h"),
        ["renewBefore (2160h) must be shorter than duration (2160h, the default)"],
    ),
    ("renew-before-under-5m", certificate(renewBefore="4m"), ["renewBefore must be at least 5m, got 4m"]),
    (
        "renew-before-and-percentage",
        certificate(renewBefore="720h", renewBeforePercentage=25),
        ["renewBefore and renewBeforePercentage cannot both be set"],
    ),
    ("percentage-100", certificate(renewBeforePercentage=100), ["spec.renewBeforePercentage", "less than or equal to 99"]),
    ("percentage-0", certificate(renewBeforePercentage=0), ["spec.renewBeforePercentage", "greater than or equal to 1"]),
    (
        "unknown-usage",
        certificate(usages=["server auth", "web server"]),
        ['spec.usages[1]: Unsupported value: "web server"', '"server auth"'],
    ),
    ("rsa-1024", certificate(privateKey={"size": 1024}), ["RSA key size must be 2048, 3072, 4096 or 8192"]),
    (
        "rsa-2049",
        certificate(privateKey={"algorithm": "RSA", "size": 2049}),
        ["spec.privateKey.size", "RSA key size must be 2048, 3072, 4096 or 8192"],
    ),
    (
        "ecdsa-255",
        certificate(privateKey={"algorithm": "ECDSA", "size": 255}),
        ["spec.privateKey.size", "ECDSA key size must be 256, 384 or 521"],
    ),
    (
        "unknown-algorithm",
        certificate(privateKey={"algorithm": "DSA"}),
        ['spec.privateKey.algorithm: Unsupported value: "DSA"', '"RSA", "ECDSA", "Ed25519"'],
    ),
    (
        "unknown-encoding",
        certificate(privateKey={"encoding": "DER"}),
        ['spec.privateKey.encoding: Unsupported value: "DER"'],
    ),
    (
        "name-constraints-without-is-ca",
        certificate(nameConstraints={"permitted": {"dnsDomains": ["example.com"]}}),
        ["spec.nameConstraints", "nameConstraints can only be set on a CA certificate: set isCA: true"],
    ),
    (
        "name-constraints-is-ca-false",
        certificate(isCA=False, nameConstraints={"excluded": {"dnsDomains": ["example.com"]}}),
        ["nameConstraints can only be set on a CA certificate"],
    ),
    (
        "name-constraints-empty",
        certificate(isCA=True, nameConstraints={"critical": True}),
        ["nameConstraints needs permitted or excluded"],
    ),
    (
        "name-constraints-bad-cidr",
        certificate(isCA=True, nameConstraints={"permitted": {"ipRanges": ["10.0.0.0/33"]}}),
        ['"10.0.0.0/33" is not a valid CIDR range'],
    ),
    (
        "issuer-kind",
        certificate(issuerRef={"name": "step", "kind": "StepClusterIssuer"}),
        ['spec.issuerRef.kind: Unsupported value: "StepClusterIssuer"', '"Issuer", "ClusterIssuer"'],
    ),
    (
        "issuer-group",
        certificate(issuerRef={"name": "pca", "group": "awspca.cert-manager.io"}),
        ['spec.issuerRef.group: Unsupported value: "awspca.cert-manager.io"'],
    ),
    ("issuer-ref-missing", certificate(issuerRef=None), ["spec.issuerRef: Required value"]),
    ("issuer-name-missing", certificate(issuerRef={"kind": "Issuer"}), ["spec.issuerRef.name: Required value"]),
    ("secret-name-missing", certificate(secretName=None), ["spec.secretName: Required value"]),
    (
        "secret-name-invalid",
        certificate(secretName="Web_TLS"),
        ["spec.secretName", "secretName must be a valid Secret name"],
    ),
    ("common-name-too-long", certificate(commonName="a" * 65), ["spec.commonName: Too long"]),
    (
        "email-with-display-name",
        certificate(emailAddresses=["Ops <ops@example.com>"]),
        ['"Ops <ops@example.com>" is not a plain email address'],
    ),
    ("uri-not-absolute", certificate(uris=["web"]), ['"web" is not a valid absolute URI']),
    (
        "reserved-secret-annotation",
        certificate(secretTemplate={"annotations": {"certmint.io/issuer-name": "other"}}),
        ["secretTemplate annotations must not start with certmint.io/"],
    ),
    (
        "duplicate-output-format",
        certificate(additionalOutputFormats=[{"type": "DER"}, {"type": "DER"}]),
        ["spec.additionalOutputFormats[1]: Duplicate value"],
    ),
    (
        "unknown-output-format",
        certificate(additionalOutputFormats=[{"type": "PFX"}]),
        ['Unsupported value: "PFX"'],
    ),
    (
        "pkcs12-without-password",
        certificate(keystores={"pkcs12": {"create": True}}),
        ["spec.keystores.pkcs12.passwordSecretRef: Required value"],
    ),
    (
        "pkcs12-unknown-profile",
        certificate(keystores={"pkcs12": {"create": True, "passwordSecretRef": {"name": "p", "key": "k"}, "profile": "AES"}}),
        ['Unsupported value: "AES"'],
    ),
    (
        "jks-keystore",
        certificate(keystores={"jks": {"create": True, "passwordSecretRef": {"name": "p", "key": "k"}}}),
        ["JKS keystores are not supported: use keystores.pkcs12 instead"],
    ),
    ("revision-history-limit-0", certificate(revisionHistoryLimit=0), ["spec.revisionHistoryLimit", "greater than or equal to 1"]),
    ("certificate-without-spec", {k: v for k, v in certificate().items() if k != "spec"}, ["spec: Required value"]),
    ("cert-manager-only-field", certificate(literalSubject="CN=web"), ['unknown field "spec.literalSubject"']),
    ("issuer-neither", issuer({}), ["exactly one of selfSigned, ca or step must be set"]),
    ("issuer-both", issuer({"selfSigned": {}, "ca": {"secretName": "root"}}), ["exactly one of selfSigned, ca or step must be set"]),
    ("issuer-without-spec", issuer(None), ["spec: Required value"]),
    ("issuer-ca-without-secret", issuer({"ca": {}}), ["spec.ca.secretName: Required value"]),
    ("issuer-acme", issuer({"acme": {"server": "https://acme.example"}}), ['unknown field "spec.acme"']),
    (
        "cluster-issuer-both",
        issuer({"selfSigned": {}, "ca": {"secretName": "root"}}, kind="ClusterIssuer"),
        ["exactly one of selfSigned, ca or step must be set"],
    ),
    ("cluster-issuer-neither", issuer({}, kind="ClusterIssuer"), ["exactly one of selfSigned, ca or step must be set"]),
    (
        "ecdsa-key-encipherment",
        certificate(privateKey={"algorithm": "ECDSA"}, usages=["digital signature", "key encipherment"]),
        ["spec.usages", "key encipherment and data encipherment need an RSA key; an ECDSA key only signs",
         "RFC 8813, RFC 8410"],
    ),
    (
        "ecdsa-data-encipherment",
        certificate(privateKey={"algorithm": "ECDSA", "size": 384}, usages=["data encipherment", "server auth"]),
        ["spec.usages", "need an RSA key; an ECDSA key only signs"],
    ),
    (
        "ed25519-key-encipherment",
        certificate(privateKey={"algorithm": "Ed25519"}, usages=["key encipherment"], isCA=True),
        ["spec.usages", "need an RSA key; an Ed25519 key only signs", "or use privateKey.algorithm RSA"],
    ),
]


@pytest.mark.parametrize("manifest, fragments", [pytest.param(m, f, id=i) for i, m, f in BAD])
def test_bad_manifest_is_rejected_with_a_readable_message(kubectl, namespace, manifest, fragments):
    if manifest["kind"] == "ClusterIssuer":
        manifest = {**manifest, "metadata": {"name": f"{namespace}-bad"}}  # cluster-wide: unique name
    result = apply(kubectl, namespace, manifest)
    assert result.returncode != 0, f"accepted:\n{result.stdout}"
    for fragment in fragments:
        assert fragment in result.stderr, f"{fragment!r} not in:\n{result.stderr}"
    assert "type conversion error" not in result.stderr  # a CEL rule failed instead of answering


SEED_CLUSTER_ISSUER_AND_CERTIFICATE = """\
# From a cert-manager guide; only apiVersion changed.
apiVersion: certmint.io/v1
kind: Certificate
metadata:
  name: provider-tls
spec:
  secretName: provider-tls
  issuerRef:
    name: virtrigaud-ca-issuer
    kind: ClusterIssuer
  commonName: provider-service
  dnsNames:
    - provider-service
    - provider-service.default.svc.cluster.local
  duration: 8760h # 1 year
  renewBefore: 720h # 30 days before expiry
---
apiVersion: certmint.io/v1
kind: Certificate
metadata:
  name: fieldguide
spec:
  secretName: fieldguide
  duration: 2160h0m0s # 90d
  renewBefore: 360h0m0s # 15d
  isCA: null #false
  privateKey:
    algorithm: RSA
    encoding: PKCS1
    size: 2048
  usages:
    - server auth
    - client auth
  dnsNames:
    - "fieldguide.example.com"
  issuerRef:
    name: letsencrypt-prod
    kind: ClusterIssuer
    group: cert-manager.io
"""


def test_ported_cert_manager_manifests_are_accepted(kubectl, namespace):
    result = kubectl("apply", "-n", namespace, "-f", "-", input=SEED_CLUSTER_ISSUER_AND_CERTIFICATE, check=False)
    assert result.returncode == 0, result.stderr
    stored = json.loads(kubectl("get", "-n", namespace, "certificate", "fieldguide", "-o", "json").stdout)["spec"]
    assert "isCA" not in stored  # null is pruned
    assert stored["duration"] == "2160h0m0s" and stored["issuerRef"]["group"] == "cert-manager.io"


GOOD = [
    ("minimal", certificate()),
    ("common-name-only", certificate(dnsNames=None, commonName="web")),
    ("ip-only", certificate(dnsNames=None, ipAddresses=["10.0.0.1", "2001:db8::1", "::1"])),
    ("uri-only", certificate(dnsNames=None, uris=["spiffe://cluster.local/ns/default/sa/web"])),
    ("email-only", certificate(dnsNames=None, emailAddresses=["ops@example.com"])),
    ("ed25519-size-ignored", certificate(privateKey={"algorithm": "Ed25519", "size": 256})),
    ("rsa-key-encipherment", certificate(privateKey={"algorithm": "RSA"}, usages=["key encipherment", "data encipherment"])),
    ("default-rsa-key-encipherment", certificate(usages=["digital signature", "key encipherment"])),
    ("ecdsa-signing-only", certificate(privateKey={"algorithm": "ECDSA"}, usages=["digital signature", "server auth"])),
    ("ed25519-default-usages", certificate(privateKey={"algorithm": "Ed25519"}, isCA=True)),
    ("short-lived", certificate(duration="1h", renewBefore="5m")),
    ("fractional", certificate(duration="1.5h", renewBefore="1h29m59s")),
    ("percentage", certificate(duration="90m", renewBeforePercentage=99)),
    (
        "everything",
        certificate(
            commonName="everything",
            dnsNames=["*.example.com", "example.com"],
            ipAddresses=["10.0.0.1"],
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
            isCA=True,
            usages=["cert sign", "crl sign", "digital signature", "signing", "s/mime"],
            privateKey={"algorithm": "ECDSA", "size": 384, "encoding": "PKCS8", "rotationPolicy": "Never"},
            secretTemplate={
                "annotations": {"team": "ops", "cert-manager.io/allow-direct-injection": "true"},
                "labels": {"app": "web"},
            },
            additionalOutputFormats=[{"type": "DER"}, {"type": "CombinedPEM"}],
            keystores={
                "pkcs12": {"create": True, "passwordSecretRef": {"name": "p12", "key": "pw"}, "profile": "Modern2023"},
                "jks": {"create": False, "passwordSecretRef": {"name": "jks", "key": "pw"}, "alias": "web"},
            },
            nameConstraints={
                "critical": True,
                "permitted": {
                    "dnsDomains": ["example.com"],
                    "ipRanges": ["10.0.0.0/8", "2001:db8::/32"],
                    "emailAddresses": ["example.com"],
                    "uriDomains": [".example.com"],
                },
                "excluded": {"dnsDomains": ["bad.example.com"]},
            },
            revisionHistoryLimit=1,
            issuerRef={"name": "root", "kind": "ClusterIssuer", "group": "certmint.io"},
        ),
    ),
    ("issuer-self-signed", issuer({"selfSigned": {}})),
    (
        "issuer-ca",
        issuer(
            {
                "ca": {
                    "secretName": "root-ca",
                    "crlDistributionPoints": ["http://crl.example/root.crl"],
                    "ocspServers": ["http://ocsp.example"],
                    "issuingCertificateURLs": ["http://certs.example/root.crt"],
                }
            }
        ),
    ),
    ("cluster-issuer-self-signed", issuer({"selfSigned": {"crlDistributionPoints": ["http://crl.example/a.crl"]}}, "ClusterIssuer")),
    ("cluster-issuer-ca", issuer({"ca": {"secretName": "root-ca"}}, "ClusterIssuer")),
]


@pytest.mark.parametrize("manifest", [pytest.param(m, id=i) for i, m in GOOD])
def test_good_manifest_is_stored_as_written(kubectl, namespace, manifest):
    cluster_scoped = manifest["kind"] == "ClusterIssuer"
    if cluster_scoped:
        manifest = {**manifest, "metadata": {"name": f"{namespace}-good"}}
    result = apply(kubectl, namespace, manifest)
    assert result.returncode == 0, result.stderr
    name = manifest["metadata"]["name"]
    where = [] if cluster_scoped else ["-n", namespace]
    try:
        stored = json.loads(kubectl("get", *where, manifest["kind"].lower(), name, "-o", "json").stdout)
        assert stored["spec"] == manifest["spec"]  # no defaults written into the object
    finally:
        if cluster_scoped:
            kubectl("delete", manifest["kind"].lower(), name, "--wait=false", check=False)


def test_short_names_and_category(kubectl, namespace):
    apply(kubectl, namespace, certificate("short-names"))
    apply(kubectl, namespace, issuer({"selfSigned": {}}, name="short-names"))
    for short in ("mintcert", "mintcerts"):
        assert "short-names" in kubectl("get", "-n", namespace, short).stdout
    assert "short-names" in kubectl("get", "-n", namespace, "mintiss").stdout
    kubectl("get", "mintciss")
    listed = kubectl("get", "-n", namespace, "certmint", "-o", "name").stdout.split()
    assert "certificate.certmint.io/short-names" in listed and "issuer.certmint.io/short-names" in listed
    header = kubectl("get", "-n", namespace, "mintcert", "-o", "wide").stdout.splitlines()[0].split()
    assert header == ["NAME", "READY", "SECRET", "ISSUER", "STATUS", "EXPIRATION", "AGE"]
