"""Static checks of crds/*.yaml: structural schemas, names that coexist with
cert-manager's, printer columns, status subresource, and agreement with the model.
What the API server does with them is tested in tests/e2e/test_validation.py."""
import functools
from pathlib import Path

import pytest
import yaml

from certmint.model import certificate as cert_model
from certmint.model.duration import DURATION_PATTERN

CRD_DIR = Path(__file__).resolve().parents[2] / "crds"
CERT_MANAGER_SHORT_NAMES = {"cert", "certs", "iss", "ciss", "cr", "crs", "cm"}
# trust-manager's Bundle (trust.cert-manager.io) is `bundle`/`bundles`: ours must not shadow it.
TRUST_MANAGER_NAMES = {"bundle", "bundles", "ba"}

EXPECTED = {
    "certificates.yaml": ("Certificate", "certificates", "Namespaced", ["mintcert", "mintcerts"]),
    "issuers.yaml": ("Issuer", "issuers", "Namespaced", ["mintiss"]),
    "clusterissuers.yaml": ("ClusterIssuer", "clusterissuers", "Cluster", ["mintciss"]),
    "certificaterevocations.yaml": ("CertificateRevocation", "certificaterevocations", "Namespaced",
                                    ["mintrevoke", "mintrev"]),
    "bundles.yaml": ("Bundle", "bundles", "Cluster", ["mintbundle", "mintbundles"]),
}


@functools.cache
def load(name):
    docs = [d for d in yaml.safe_load_all((CRD_DIR / name).read_text(encoding="utf-8")) if d]
    assert len(docs) == 1, f"{name} must hold exactly one CRD"
    return docs[0]


def version(crd):
    (v1,) = crd["spec"]["versions"]
    return v1


def schema(crd):
    return version(crd)["schema"]["openAPIV3Schema"]


def walk(node, path="$"):
    """Yield (path, schema node) for every schema node below `node`."""
    yield path, node
    for name, child in (node.get("properties") or {}).items():
        yield from walk(child, f"{path}.{name}")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}[*]")
    if "items" in node:
        yield from walk(node["items"], f"{path}[]")


ALL = sorted(EXPECTED)


def test_all_crd_files_are_tested():
    assert sorted(p.name for p in CRD_DIR.glob("*.yaml")) == ALL


@pytest.mark.parametrize("name", ALL)
def test_names_scope_and_version(name):
    kind, plural, scope, short_names = EXPECTED[name]
    crd = load(name)
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["kind"] == "CustomResourceDefinition"
    assert crd["metadata"]["name"] == f"{plural}.certmint.io"
    spec = crd["spec"]
    assert spec["group"] == "certmint.io"
    assert spec["scope"] == scope
    names = spec["names"]
    assert names["kind"] == kind and names["plural"] == plural and names["singular"] == kind.lower()
    assert names["listKind"] == f"{kind}List"
    assert names["shortNames"] == short_names
    assert "certmint" in names["categories"]
    v1 = version(crd)
    assert v1["name"] == "v1" and v1["served"] is True and v1["storage"] is True
    assert v1["subresources"] == {"status": {}}


def test_short_names_do_not_collide_with_cert_managers_or_each_other():
    seen = []
    for name in ALL:
        names = load(name)["spec"]["names"]
        seen += names["shortNames"] + [names["plural"], names["singular"]]
    assert not set(seen) & CERT_MANAGER_SHORT_NAMES
    short = [n for name in ALL for n in load(name)["spec"]["names"]["shortNames"]]
    assert not set(short) & TRUST_MANAGER_NAMES
    assert len(seen) == len(set(seen))


@pytest.mark.parametrize("name", ALL)
def test_schema_is_structural(name):
    root = schema(load(name))
    assert root["type"] == "object"
    assert set(root["properties"]) == {"apiVersion", "kind", "metadata", "spec", "status"}
    assert root["required"] == ["spec"]
    for path, node in walk(root):
        assert "type" in node, f"{path} has no type"
        assert node["type"] in {"object", "array", "string", "integer", "boolean", "number"}, path
        if node["type"] == "array":
            assert "items" in node, f"{path} is an array without items"
        if node["type"] == "object" and path != "$.metadata":
            assert "properties" in node or "additionalProperties" in node, f"{path} is an open object"
            assert not ("properties" in node and "additionalProperties" in node), path
        for key in ("properties", "additionalProperties", "items"):
            assert not (key in node and node["type"] not in {"object", "array"}), path
        assert "x-kubernetes-preserve-unknown-fields" not in node, path
        for required in node.get("required", []):
            assert required in node["properties"], f"{path} requires unknown {required}"


@pytest.mark.parametrize("name", ALL)
def test_spec_has_no_defaults(name):
    """Defaults are applied by the model so the stored object stays as written."""
    for path, node in walk(schema(load(name))["properties"]["spec"], "$.spec"):
        assert "default" not in node, path


@pytest.mark.parametrize("name", ALL)
def test_cel_rules_are_bounded(name):
    """Every list and every CEL-checked string in spec is bounded, so the estimated cost
    of the rules stays within the API server's budget."""
    spec = schema(load(name))["properties"]["spec"]
    for path, node in walk(spec, "$.spec"):
        if node["type"] == "array":
            assert "maxItems" in node, f"{path} has no maxItems"
        if node["type"] == "string" and "enum" not in node:
            assert "maxLength" in node or path.endswith("[*]"), f"{path} has no maxLength"
        for rule in node.get("x-kubernetes-validations", []):
            assert rule["rule"].strip(), path
            assert ("message" in rule) != ("messageExpression" in rule), f"{path}: one message per rule"


@pytest.mark.parametrize("name", ALL)
def test_status_conditions(name):
    status = schema(load(name))["properties"]["status"]
    conditions = status["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    item = conditions["items"]
    assert set(item["required"]) == {"type", "status"}
    props = item["properties"]
    assert set(props) == {"type", "status", "reason", "message", "lastTransitionTime", "observedGeneration"}
    assert props["status"]["enum"] == ["True", "False", "Unknown"]
    assert props["lastTransitionTime"]["format"] == "date-time"
    assert props["observedGeneration"] == {"type": "integer", "format": "int64"}


def columns(name):
    return {c["name"]: c for c in version(load(name))["additionalPrinterColumns"]}


READY = '.status.conditions[?(@.type=="Ready")].status'
READY_MESSAGE = '.status.conditions[?(@.type=="Ready")].message'


def test_certificate_printer_columns():
    cols = columns("certificates.yaml")
    assert list(cols) == ["Ready", "Secret", "Issuer", "Status", "Expiration", "Age"]
    assert cols["Ready"]["jsonPath"] == READY
    assert cols["Secret"]["jsonPath"] == ".spec.secretName"
    assert cols["Issuer"]["jsonPath"] == ".spec.issuerRef.name"
    assert cols["Status"]["jsonPath"] == READY_MESSAGE and cols["Status"]["priority"] == 1
    # a string: kubectl prints a future date column as <invalid>
    assert (cols["Expiration"]["type"], cols["Expiration"]["jsonPath"]) == ("string", ".status.notAfter")
    assert cols["Age"]["jsonPath"] == ".metadata.creationTimestamp" and cols["Age"]["type"] == "date"


@pytest.mark.parametrize("name", ["issuers.yaml", "clusterissuers.yaml"])
def test_issuer_printer_columns(name):
    cols = columns(name)
    assert list(cols) == ["Ready", "Status", "Age"]
    assert cols["Ready"]["jsonPath"] == READY
    assert cols["Status"]["jsonPath"] == READY_MESSAGE and cols["Status"]["priority"] == 1


# ------------------------------------------------------------------ Certificate fields


def cert_spec():
    return schema(load("certificates.yaml"))["properties"]["spec"]


def test_certificate_has_every_cert_manager_field():
    props = cert_spec()["properties"]
    assert set(props) == {
        "secretName", "issuerRef", "commonName", "dnsNames", "ipAddresses", "uris", "emailAddresses",
        "subject", "duration", "renewBefore", "renewBeforePercentage", "isCA", "usages", "privateKey",
        "secretTemplate", "additionalOutputFormats", "keystores", "nameConstraints", "revisionHistoryLimit",
    }  # fmt: skip
    assert cert_spec()["required"] == ["secretName", "issuerRef"]
    assert props["issuerRef"]["required"] == ["name"]
    assert set(props["subject"]["properties"]) == {
        "organizations", "countries", "organizationalUnits", "localities", "provinces",
        "streetAddresses", "postalCodes", "serialNumber",
    }  # fmt: skip
    assert props["commonName"]["maxLength"] == cert_model.MAX_COMMON_NAME_LENGTH
    assert (props["renewBeforePercentage"]["minimum"], props["renewBeforePercentage"]["maximum"]) == (1, 99)
    assert props["revisionHistoryLimit"]["minimum"] == 1
    pkcs12 = props["keystores"]["properties"]["pkcs12"]
    assert pkcs12["required"] == ["create", "passwordSecretRef"]
    assert pkcs12["properties"]["passwordSecretRef"]["required"] == ["name", "key"]
    nc = props["nameConstraints"]["properties"]
    for side in ("permitted", "excluded"):
        assert set(nc[side]["properties"]) == {"dnsDomains", "ipRanges", "emailAddresses", "uriDomains"}


def test_enums_match_the_model():
    props = cert_spec()["properties"]
    assert tuple(props["usages"]["items"]["enum"]) == cert_model.KEY_USAGES
    key = props["privateKey"]["properties"]
    assert tuple(key["algorithm"]["enum"]) == cert_model.KEY_ALGORITHMS
    assert tuple(key["encoding"]["enum"]) == cert_model.KEY_ENCODINGS
    assert tuple(key["rotationPolicy"]["enum"]) == cert_model.ROTATION_POLICIES
    assert tuple(props["issuerRef"]["properties"]["kind"]["enum"]) == cert_model.ISSUER_KINDS
    assert set(props["issuerRef"]["properties"]["group"]["enum"]) == cert_model.GROUP_ALIASES
    aof = props["additionalOutputFormats"]
    assert tuple(aof["items"]["properties"]["type"]["enum"]) == cert_model.ADDITIONAL_OUTPUT_FORMATS
    assert aof["x-kubernetes-list-type"] == "map" and aof["x-kubernetes-list-map-keys"] == ["type"]
    profile = props["keystores"]["properties"]["pkcs12"]["properties"]["profile"]
    assert tuple(profile["enum"]) == cert_model.PKCS12_PROFILES


def all_rules(node):
    return " ".join(
        r["rule"] for _, n in walk(node) for r in n.get("x-kubernetes-validations", [])
    )


def test_duration_rules_use_the_models_pattern():
    rules = all_rules(cert_spec())
    assert rules.count(f"matches('{DURATION_PATTERN}')") == 6
    assert "duration(self) >= duration('1h')" in rules
    assert "duration(self) >= duration('5m')" in rules
    assert "'2160h'" in rules  # the default duration when checking renewBefore


def test_key_size_rules_match_the_model():
    rules = all_rules(cert_spec()["properties"]["privateKey"])
    assert f"self.size in {list(cert_model.RSA_KEY_SIZES)}" in rules
    assert f"self.size in {list(cert_model.ECDSA_KEY_SIZES)}" in rules


def test_certificate_messages_are_readable():
    messages = [
        r.get("message", r.get("messageExpression", ""))
        for _, n in walk(cert_spec())
        for r in n.get("x-kubernetes-validations", [])
    ]
    joined = " ".join(messages)
    for fragment in (
        "at least one of commonName, dnsNames, ipAddresses, uris, emailAddresses is required",
        "duration must be at least 1h",
        "must be shorter than duration",
        "renewBefore and renewBeforePercentage cannot both be set",
        "is not a valid IP address",
        "RSA key size must be 2048, 3072, 4096 or 8192",
        "ECDSA key size must be 256, 384 or 521",
        "nameConstraints can only be set on a CA certificate",
    ):
        assert fragment in joined


@pytest.mark.parametrize("name", ["issuers.yaml", "clusterissuers.yaml"])
def test_issuer_spec(name):
    spec = schema(load(name))["properties"]["spec"]
    assert set(spec["properties"]) == {"selfSigned", "ca", "step"}
    (rule,) = spec["x-kubernetes-validations"]
    assert all(f"has(self.{t})" in rule["rule"] for t in ("selfSigned", "ca", "step"))
    assert rule["message"] == "exactly one of selfSigned, ca or step must be set"
    ca = spec["properties"]["ca"]
    assert ca["required"] == ["secretName"]
    assert set(ca["properties"]) == {"secretName", "crlDistributionPoints", "ocspServers", "issuingCertificateURLs",
                                     "crl"}
    assert set(spec["properties"]["selfSigned"]["properties"]) == {"crlDistributionPoints"}


def test_issuer_and_cluster_issuer_share_their_schema():
    assert schema(load("issuers.yaml"))["properties"]["spec"]["properties"]["selfSigned"] == (
        schema(load("clusterissuers.yaml"))["properties"]["spec"]["properties"]["selfSigned"]
    )
    assert schema(load("issuers.yaml"))["properties"]["status"] == schema(load("clusterissuers.yaml"))["properties"]["status"]


@pytest.mark.parametrize("name", ["issuers.yaml", "clusterissuers.yaml"])
def test_issuer_step_takes_step_issuers_fields(name):
    """spec.step is a StepIssuer's spec: url, caBundle, provisioner {name, kid, passwordRef {name, key}}."""
    step = schema(load(name))["properties"]["spec"]["properties"]["step"]
    assert step["required"] == ["url", "caBundle", "provisioner"]
    assert set(step["properties"]) == {"url", "caBundle", "provisioner"}
    assert step["properties"]["caBundle"]["format"] == "byte"  # base64, as step-issuer's []byte
    (url_rule,) = step["properties"]["url"]["x-kubernetes-validations"]
    assert "startsWith('https://')" in url_rule["rule"] and "isURL(self)" in url_rule["rule"]
    provisioner = step["properties"]["provisioner"]
    assert provisioner["required"] == ["name", "kid", "passwordRef"]
    assert set(provisioner["properties"]) == {"name", "kid", "passwordRef"}
    password_ref = provisioner["properties"]["passwordRef"]
    assert password_ref["required"] == ["name", "key"] and set(password_ref["properties"]) == {"name", "key"}


def test_issuer_and_cluster_issuer_share_the_step_schema_but_for_where_the_password_is():
    issuer, cluster = (schema(load(n))["properties"]["spec"]["properties"]["step"] for n in ("issuers.yaml", "clusterissuers.yaml"))
    issuer_ref = issuer["properties"]["provisioner"]["properties"]["passwordRef"]
    cluster_ref = cluster["properties"]["provisioner"]["properties"]["passwordRef"]
    assert "Issuer's namespace" in issuer_ref["description"]
    assert "cluster resource namespace" in cluster_ref["description"]
    assert {**issuer_ref, "description": ""} == {**cluster_ref, "description": ""}
    assert {k: v for k, v in issuer["properties"].items() if k != "provisioner"} == \
        {k: v for k, v in cluster["properties"].items() if k != "provisioner"}


# ------------------------------------------------------------------ revocation and CRLs


@pytest.mark.parametrize("name", ["issuers.yaml", "clusterissuers.yaml"])
def test_issuer_crl(name):
    """spec.ca.crl {validity}: present means enabled, the model applies the 24h default; the
    status says which CRL was published last."""
    from certmint.model.issuer import MINIMUM_CRL_VALIDITY

    crl = schema(load(name))["properties"]["spec"]["properties"]["ca"]["properties"]["crl"]
    assert set(crl["properties"]) == {"validity"} and "required" not in crl
    rules = all_rules(crl)
    assert f"matches('{DURATION_PATTERN}')" in rules
    assert MINIMUM_CRL_VALIDITY == __import__("datetime").timedelta(hours=3)
    assert "duration(self) >= duration('3h')" in rules
    status = schema(load(name))["properties"]["status"]["properties"]["crl"]["properties"]
    assert set(status) == {"number", "thisUpdate", "nextUpdate", "revokedCertificates", "configMap"}


def revocation_spec():
    return schema(load("certificaterevocations.yaml"))["properties"]["spec"]


def test_revocation_printer_columns():
    cols = columns("certificaterevocations.yaml")
    assert list(cols) == ["Certificate", "Serial", "Reason", "Revoked", "Revoked At", "Status", "Age"]
    assert cols["Certificate"]["jsonPath"] == ".spec.certificateName"
    assert cols["Serial"]["jsonPath"] == ".spec.serialNumber"
    assert cols["Reason"]["jsonPath"] == ".spec.reason"
    assert cols["Revoked"]["jsonPath"] == '.status.conditions[?(@.type=="Revoked")].status'
    assert cols["Status"]["priority"] == 1


def test_revocation_spec_matches_the_model():
    from certmint.revocation import REASONS, REVISIONS, SERIAL_PATTERN

    spec = revocation_spec()
    props = spec["properties"]
    assert set(props) == {"certificateName", "revisions", "issuerRef", "serialNumber", "reason"}
    assert spec["required"] == ["reason"]
    assert tuple(props["revisions"]["enum"]) == REVISIONS
    assert tuple(props["issuerRef"]["properties"]["kind"]["enum"]) == cert_model.ISSUER_KINDS
    (reason_rule,) = props["reason"]["x-kubernetes-validations"]
    assert all(f"'{reason}'" in reason_rule["rule"] for reason in REASONS)
    assert "removeFromCRL" not in reason_rule["rule"]  # what deleting a hold does, not a reason
    assert f"self.matches('{SERIAL_PATTERN}')" in all_rules(props["serialNumber"])
    rules = [r["rule"] for r in spec["x-kubernetes-validations"]]
    assert "self == oldSelf" in rules  # an audit record: immutable
    messages = " ".join(r.get("message", r.get("messageExpression", "")) for _, n in walk(spec)
                        for r in n.get("x-kubernetes-validations", []))
    for fragment in ("exactly one target must be set", "issuerRef and serialNumber go together",
                     "is not a serial number in hex", "is not an RFC 5280 revocation reason",
                     "cannot be changed once created"):
        assert fragment in messages


# ------------------------------------------------------------------ Bundle


def bundle_spec():
    return schema(load("bundles.yaml"))["properties"]["spec"]


def test_bundle_takes_trust_managers_field_names():
    spec = bundle_spec()
    assert spec["required"] == ["sources", "target"]
    assert set(spec["properties"]) == {"sources", "target", "namespaceSelector"}
    source = spec["properties"]["sources"]["items"]
    assert set(source["properties"]) == {"secret", "configMap", "inLine", "issuerRef", "useDefaultCAs"}
    assert "exactly one of" in source["x-kubernetes-validations"][0]["message"]
    for kind in ("secret", "configMap"):
        assert source["properties"][kind]["required"] == ["name", "key"]
    assert source["properties"]["issuerRef"]["properties"]["kind"]["enum"] == ["Issuer", "ClusterIssuer"]
    target = spec["properties"]["target"]
    assert set(target["properties"]) == {"configMap", "secret", "additionalFormats"}
    assert set(target["properties"]["additionalFormats"]["properties"]) == {"pkcs12"}
    selector = spec["properties"]["namespaceSelector"]["properties"]
    assert set(selector) == {"matchLabels", "matchExpressions"}
    assert selector["matchExpressions"]["items"]["properties"]["operator"]["enum"] == [
        "In", "NotIn", "Exists", "DoesNotExist"]


def test_bundle_status_and_columns():
    status = schema(load("bundles.yaml"))["properties"]["status"]["properties"]
    assert set(status) == {"conditions", "certificates", "namespaces", "hash", "issuerCAs"}
    cols = columns("bundles.yaml")
    assert list(cols) == ["ConfigMap Target", "Synced", "Reason", "Certificates", "Namespaces", "Age"]
    assert cols["Synced"]["jsonPath"] == '.status.conditions[?(@.type=="Synced")].status'
