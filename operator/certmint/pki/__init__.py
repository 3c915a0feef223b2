"""The pure PKI layer: keys, certificates and their encodings, with no Kubernetes in it."""
from certmint.pki.bundle import (
    LEGACY_DES,
    LEGACY_RC2,
    MODERN_2023,
    bundle,
    combined_pem,
    pkcs12_keystore,
    pkcs12_truststore,
)
from certmint.pki.ca import (
    EXPIRED,
    INVALID_KEY_PAIR,
    NOT_A_CERTIFICATE_AUTHORITY,
    NOT_YET_VALID,
    CAError,
    load_ca,
)
from certmint.pki.certificates import certificates_pem
from certmint.pki.crl import (
    CRLError,
    ParsedCRL,
    RevokedCertificate,
    build_crl,
    check_can_sign_crl,
    crl_der,
    crl_pem,
    parse_crl,
    without_expired,
)
from certmint.pki.csr import RequestedNames, as_decided_by_ca, build_csr, requested_names
from certmint.pki.inspect import certificate_matches_key, describe, parse_certificates, template_mismatches
from certmint.pki.keys import (
    PrivateKey,
    PublicKey,
    encode_private_key,
    encode_private_key_der,
    expected_encoding,
    generate_key,
    key_encoding_of,
    key_matches_spec,
    key_spec_of,
    load_private_key,
    private_key_der,
    public_keys_equal,
    resolved_spec,
)
from certmint.pki.names import normalise_ip
from certmint.pki.signing import CASigner, IssueResult, check_name_constraints, issue
from certmint.pki.types import (
    ECDSA,
    ED25519,
    PKCS1,
    PKCS8,
    RSA,
    CertificateTemplate,
    IssuedCertificate,
    KeySpec,
    NameConstraints,
    PKIError,
    SigningOptions,
    Subject,
)
from certmint.pki.usages import ALL_USAGES, normalise_usages

__all__ = [
    "ALL_USAGES", "ECDSA", "ED25519", "EXPIRED", "INVALID_KEY_PAIR", "LEGACY_DES", "LEGACY_RC2", "MODERN_2023",
    "NOT_A_CERTIFICATE_AUTHORITY", "NOT_YET_VALID", "PKCS1", "PKCS8", "RSA",
    "CAError", "CASigner", "CertificateTemplate", "IssueResult", "IssuedCertificate", "KeySpec",
    "NameConstraints", "PKIError", "PrivateKey", "PublicKey", "RequestedNames", "SigningOptions", "Subject",
    "as_decided_by_ca", "build_csr", "bundle", "certificate_matches_key", "certificates_pem", "check_name_constraints", "combined_pem",
    "describe", "encode_private_key", "encode_private_key_der", "expected_encoding", "generate_key", "issue",
    "key_encoding_of", "key_matches_spec", "key_spec_of", "load_ca", "load_private_key", "normalise_ip",
    "normalise_usages", "parse_certificates", "requested_names", "pkcs12_keystore", "private_key_der", "pkcs12_truststore", "public_keys_equal",
    "resolved_spec", "template_mismatches",
    # CRLs (certmint.pki.crl)
    "CRLError", "ParsedCRL", "RevokedCertificate", "build_crl", "check_can_sign_crl", "crl_der", "crl_pem",
    "parse_crl", "without_expired",
]
