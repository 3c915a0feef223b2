"""Private keys: generate, encode, load, and tell what a key is.

Messages and exceptions never carry key bytes: parse failures are re-raised `from None`
so the original exception (which may quote the input) is not chained.
"""
from __future__ import annotations

import base64
import re
from typing import cast

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes, PrivateKeyTypes, PublicKeyTypes

from certmint.pki.types import ECDSA, ED25519, PKCS1, PKCS8, RSA, KeySpec, PKIError

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey

RSA_SIZES = (2048, 3072, 4096, 8192)
EC_CURVES: dict[int, type[ec.EllipticCurve]] = {256: ec.SECP256R1, 384: ec.SECP384R1, 521: ec.SECP521R1}
DEFAULT_SIZES: dict[str, int | None] = {RSA: 2048, ECDSA: 256, ED25519: None}

_PKCS1_HEADERS = (b"-----BEGIN RSA PRIVATE KEY-----", b"-----BEGIN EC PRIVATE KEY-----")
_PKCS8_HEADER = b"-----BEGIN PRIVATE KEY-----"
_INVALID_PEM = "tls.key is not a valid PEM private key"
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z ]*PRIVATE KEY)-----(.*?)-----END \1-----", re.DOTALL)


def resolved_spec(spec: KeySpec) -> tuple[str, int | None]:
    """(algorithm, size) with cert-manager's defaults filled in, or PKIError if unsupported.

    Ed25519 has one fixed size, so any size given for it is ignored, as cert-manager does.
    """
    if spec.algorithm not in DEFAULT_SIZES:
        raise PKIError(f"unsupported private key algorithm {spec.algorithm!r}: use RSA, ECDSA or Ed25519")
    if spec.algorithm == ED25519:
        return ED25519, None
    size = spec.size if spec.size is not None else DEFAULT_SIZES[spec.algorithm]
    allowed = RSA_SIZES if spec.algorithm == RSA else tuple(EC_CURVES)
    if size not in allowed:
        raise PKIError(f"unsupported {spec.algorithm} key size {size}: use one of {', '.join(map(str, allowed))}")
    return spec.algorithm, size


def expected_encoding(spec: KeySpec) -> str:
    """The encoding a key for spec is stored in: Ed25519 has no PKCS#1 form, so it is always PKCS8."""
    _check_encoding(spec.encoding)
    return PKCS8 if spec.algorithm == ED25519 else spec.encoding


def generate_key(spec: KeySpec) -> PrivateKey:
    """A new private key for spec (RSA 2048 and ECDSA P-256 when no size is given)."""
    algorithm, size = resolved_spec(spec)
    if size is None:  # Ed25519, the only algorithm without a size
        return ed25519.Ed25519PrivateKey.generate()
    if algorithm == RSA:
        return rsa.generate_private_key(public_exponent=65537, key_size=size)
    return ec.generate_private_key(EC_CURVES[size]())


def generate_key_der(spec: KeySpec) -> bytes:
    """generate_key, handed over as PKCS#8 DER: for making keys in another process (the GIL is held
    while OpenSSL searches for RSA primes, so threads cannot share that work out)."""
    return generate_key(spec).private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption())


def load_generated_key(der: bytes) -> PrivateKey:
    """A key generate_key_der made: sound by construction, so the RSA consistency check is skipped."""
    return cast(PrivateKey, serialization.load_der_private_key(der, password=None, unsafe_skip_rsa_key_validation=True))


def encode_private_key(key: PrivateKey, encoding: str) -> bytes:
    """Unencrypted PEM: PKCS1 is OpenSSL's traditional RSA/EC form; Ed25519 is always PKCS8."""
    return key.private_bytes(serialization.Encoding.PEM, _private_format(key, encoding), serialization.NoEncryption())


def _private_format(key: PrivateKey, encoding: str) -> serialization.PrivateFormat:
    _check_encoding(encoding)
    if encoding == PKCS1 and not isinstance(key, ed25519.Ed25519PrivateKey):
        return serialization.PrivateFormat.TraditionalOpenSSL
    return serialization.PrivateFormat.PKCS8


def encode_private_key_der(key: PrivateKey, encoding: str) -> bytes:
    """Unencrypted DER in the form encode_private_key writes as PEM: PKCS1 gives PKCS#1 for RSA
    and SEC1 for ECDSA, PKCS8 gives PKCS#8; Ed25519 is always PKCS#8."""
    return key.private_bytes(serialization.Encoding.DER, _private_format(key, encoding), serialization.NoEncryption())


def private_key_der(key_pem: bytes) -> bytes:
    """The DER inside a PEM private key, in the same encoding (PKCS#1, SEC1 or PKCS#8).

    cert-manager's key.der (additionalOutputFormats DER) is exactly this: the body of tls.key.
    """
    match = _PEM_BLOCK.search(key_pem)
    if match is None:
        raise PKIError(_INVALID_PEM)
    try:
        return base64.b64decode(b"".join(match.group(2).split()), validate=True)
    except ValueError:
        raise PKIError(_INVALID_PEM) from None


def load_private_key(pem: bytes, written_by_us: bool = False) -> PrivateKey:
    """Parse an unencrypted PEM private key of a supported type; PKIError otherwise.

    written_by_us skips the RSA consistency check (about 30 ms for a 2048-bit key): a key
    certmint generated was sound when it wrote it, and the checks that follow still compare
    it with the certificate's public key."""
    try:
        key = serialization.load_pem_private_key(pem, password=None, unsafe_skip_rsa_key_validation=written_by_us)
    except Exception:  # ValueError, TypeError, UnsupportedAlgorithm: all mean "not usable"
        raise PKIError(_INVALID_PEM) from None
    key_spec_of(key)  # rejects DSA, Ed448, X25519 and unsupported curves
    return cast(PrivateKey, key)


def key_encoding_of(pem: bytes) -> str:
    """PKCS1 or PKCS8, from the PEM header of a stored key."""
    if _PKCS8_HEADER in pem:
        return PKCS8
    if any(header in pem for header in _PKCS1_HEADERS):
        return PKCS1
    raise PKIError(_INVALID_PEM)


def key_spec_of(key: PrivateKeyTypes | PublicKeyTypes) -> tuple[str, int | None]:
    """(algorithm, size) of a private or public key; PKIError for key types certmint cannot issue."""
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return RSA, key.key_size
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        if not isinstance(key.curve, EC_CURVES.get(key.curve.key_size, ())):
            raise PKIError(f"unsupported elliptic curve {key.curve.name}: use P-256, P-384 or P-521")
        return ECDSA, key.curve.key_size
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)):
        return ED25519, None
    raise PKIError(f"unsupported key type {type(key).__name__}: use RSA, ECDSA or Ed25519")


def key_matches_spec(key: PrivateKey, spec: KeySpec) -> bool:
    """Whether key has spec's algorithm and size (encoding is checked with key_encoding_of)."""
    return key_spec_of(key) == resolved_spec(spec)


def public_keys_equal(a: PrivateKey | CertificatePublicKeyTypes, b: PrivateKey | CertificatePublicKeyTypes) -> bool:
    """Whether two keys (private or public, in any mix) share one public key."""
    return _spki(a) == _spki(b)


def _check_encoding(encoding: str) -> None:
    if encoding not in (PKCS1, PKCS8):
        raise PKIError(f"unsupported private key encoding {encoding!r}: use PKCS1 or PKCS8")


def _spki(key: PrivateKey | CertificatePublicKeyTypes) -> bytes:
    public = key.public_key() if isinstance(key, PrivateKey) else key
    return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
