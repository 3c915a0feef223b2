"""What goes into a certificate Secret: tls.crt and ca.crt, the combined PEM, and PKCS#12 stores."""
from __future__ import annotations

from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from certmint.pki.certificates import certificates_pem, unique_certificates
from certmint.pki.keys import PrivateKey
from certmint.pki.signing import CASigner
from certmint.pki.types import PKIError

LEGACY_RC2 = "LegacyRC2"
LEGACY_DES = "LegacyDES"
MODERN_2023 = "Modern2023"

# cert-manager's PKCS#12 profiles (go-pkcs12 encoders). cryptography cannot write RC2, so
# LegacyRC2 uses LegacyDES's 3DES for the certificates too: still readable by old Java/OpenSSL.
_PROFILES: dict[str, tuple[pkcs12.PBES, type[hashes.HashAlgorithm]]] = {
    LEGACY_RC2: (pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC, hashes.SHA1),
    LEGACY_DES: (pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC, hashes.SHA1),
    MODERN_2023: (pkcs12.PBES.PBESv2SHA256AndAES256CBC, hashes.SHA256),
}
_KDF_ROUNDS = 2048  # as go-pkcs12 uses for every profile
_TRUSTSTORE_ALIAS = b"ca"


def bundle(leaf: x509.Certificate, signer: CASigner | None) -> tuple[bytes, bytes]:
    """(tls.crt, ca.crt): the leaf and its intermediates without the root, then the root alone.

    A self-signed certificate is its own root, so it is both tls.crt and ca.crt.
    """
    if signer is None:
        return certificates_pem([leaf]), certificates_pem([leaf])
    return certificates_pem([leaf, *signer.intermediates]), certificates_pem([signer.root])


def combined_pem(key_pem: bytes, tls_crt_pem: bytes) -> bytes:
    """cert-manager's additionalOutputFormats CombinedPEM, byte for byte: tls.key, a newline, tls.crt.

    The newline is added even after a key that ends with one (so a blank line separates them),
    because that is what cert-manager writes and tools compare or hash the file.
    """
    return key_pem + b"\n" + tls_crt_pem


def pkcs12_keystore(key: PrivateKey, leaf: x509.Certificate, intermediates: Sequence[x509.Certificate],
                    ca: x509.Certificate | None, password: bytes, profile: str = LEGACY_RC2) -> bytes:
    """keystore.p12: the key and leaf, with the intermediates and the CA (each once) as extra certificates."""
    extra = unique_certificates([*intermediates, *([ca] if ca is not None else [])], besides=leaf)
    return pkcs12.serialize_key_and_certificates(None, key, leaf, list(extra) or None, _encryption(password, profile))


def pkcs12_truststore(ca: x509.Certificate, password: bytes, profile: str = LEGACY_RC2) -> bytes:
    """truststore.p12: the CA as a trusted certificate entry Java's KeyStore accepts."""
    entry = pkcs12.PKCS12Certificate(ca, _TRUSTSTORE_ALIAS)
    return pkcs12.serialize_java_truststore([entry], _encryption(password, profile))


def _encryption(password: bytes, profile: str) -> serialization.KeySerializationEncryption:
    if profile not in _PROFILES:
        raise PKIError(f"unknown PKCS#12 profile {profile!r}: use one of {', '.join(_PROFILES)}")
    if not password:
        raise PKIError("a PKCS#12 password must not be empty")
    algorithm, mac = _PROFILES[profile]
    return (serialization.PrivateFormat.PKCS12.encryption_builder()
            .kdf_rounds(_KDF_ROUNDS).key_cert_algorithm(algorithm).hmac_hash(mac()).build(password))
