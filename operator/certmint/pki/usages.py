"""cert-manager's usage names, and the X.509 KeyUsage / ExtendedKeyUsage they stand for.

Every comparison goes through normalise_usages, so aliases ("signing", "s/mime") and the
usages added implicitly (cert sign for a CA, key agreement for encipher/decipher only)
compare equal to what an issued certificate says.
"""
from __future__ import annotations

from collections.abc import Iterable

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, ObjectIdentifier

from certmint.pki.certificates import extension_value
from certmint.pki.types import RSA, PKIError

ALL_USAGES: tuple[str, ...] = (
    "signing", "digital signature", "content commitment", "key encipherment", "key agreement",
    "data encipherment", "cert sign", "crl sign", "encipher only", "decipher only", "any",
    "server auth", "client auth", "code signing", "email protection", "s/mime", "ipsec end system",
    "ipsec tunnel", "ipsec user", "timestamping", "ocsp signing", "microsoft sgc", "netscape sgc",
)

_ALIASES = {"signing": "digital signature", "s/mime": "email protection"}

# Key transport: only an RSA key can encrypt a key or data for its holder. RFC 8813 (ECDSA)
# and RFC 8410 (Ed25519) forbid these bits for other keys, and linters reject them.
RSA_ONLY_USAGES: tuple[str, ...] = ("key encipherment", "data encipherment")
# cert-manager's default usages, which certmint writes for RSA end-entity keys and wrote for
# every key before it made the default depend on the key.
RSA_DEFAULT_USAGES: tuple[str, ...] = ("digital signature", "key encipherment")
SIGNATURE_DEFAULT_USAGES: tuple[str, ...] = ("digital signature",)


def default_usages(algorithm: str, is_ca: bool = False) -> tuple[str, ...]:
    """The usages of a certificate whose spec names none ("cert sign" for a CA is added by the caller).

    Key encipherment only for an RSA end-entity key: ECDSA and Ed25519 keys cannot encipher, and
    RFC 3279 (section 2.3.1) recommends against it for an RSA key that signs certificates.
    """
    return RSA_DEFAULT_USAGES if algorithm == RSA and not is_ca else SIGNATURE_DEFAULT_USAGES

# cert-manager name -> keyword argument of x509.KeyUsage
_KEY_USAGES = {
    "digital signature": "digital_signature",
    "content commitment": "content_commitment",
    "key encipherment": "key_encipherment",
    "key agreement": "key_agreement",
    "data encipherment": "data_encipherment",
    "cert sign": "key_cert_sign",
    "crl sign": "crl_sign",
    "encipher only": "encipher_only",
    "decipher only": "decipher_only",
}

_EXTENDED_USAGES = {
    "any": ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,
    "server auth": ExtendedKeyUsageOID.SERVER_AUTH,
    "client auth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "code signing": ExtendedKeyUsageOID.CODE_SIGNING,
    "email protection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "ipsec end system": ObjectIdentifier("1.3.6.1.5.5.7.3.5"),
    "ipsec tunnel": ObjectIdentifier("1.3.6.1.5.5.7.3.6"),
    "ipsec user": ObjectIdentifier("1.3.6.1.5.5.7.3.7"),
    "timestamping": ExtendedKeyUsageOID.TIME_STAMPING,
    "ocsp signing": ExtendedKeyUsageOID.OCSP_SIGNING,
    "microsoft sgc": ObjectIdentifier("1.3.6.1.4.1.311.10.3.3"),
    "netscape sgc": ObjectIdentifier("2.16.840.1.113730.4.1"),
}
_EXTENDED_NAMES = {oid: name for name, oid in _EXTENDED_USAGES.items()}


def normalise_usages(usages: Iterable[str], is_ca: bool = False) -> tuple[str, ...]:
    """The sorted canonical usage set a certificate built from these usages ends up with.

    Aliases map to their canonical name, a CA always gets cert sign, and encipher/decipher
    only bring key agreement (X.509 gives them no meaning without it). Unknown names raise.
    """
    names = {_canonical(usage) for usage in usages}
    if is_ca:
        names.add("cert sign")
    if names & {"encipher only", "decipher only"}:
        names.add("key agreement")
    return tuple(sorted(names))


def key_usage_extension(usages: Iterable[str]) -> x509.KeyUsage | None:
    """KeyUsage for the key usages among normalised usages, or None when there are none."""
    flags = {_KEY_USAGES[name] for name in usages if name in _KEY_USAGES}
    if not flags:
        return None
    return x509.KeyUsage(**{argument: argument in flags for argument in _KEY_USAGES.values()})


def extended_key_usage_extension(usages: Iterable[str]) -> x509.ExtendedKeyUsage | None:
    """ExtendedKeyUsage for the extended usages among normalised usages, or None when there are none."""
    oids = [_EXTENDED_USAGES[name] for name in usages if name in _EXTENDED_USAGES]
    return x509.ExtendedKeyUsage(oids) if oids else None


def usages_of(certificate: x509.Certificate) -> tuple[str, ...]:
    """Sorted usage names a certificate grants; an extended usage without a name shows as its OID."""
    names: set[str] = set()
    key_usage = extension_value(certificate, x509.KeyUsage)
    if key_usage is not None:
        names.update(name for name, argument in _KEY_USAGES.items() if _flag(key_usage, argument))
    extended = extension_value(certificate, x509.ExtendedKeyUsage)
    if extended is not None:
        names.update(_EXTENDED_NAMES.get(oid, oid.dotted_string) for oid in extended)
    return tuple(sorted(names))


def _canonical(usage: str) -> str:
    name = _ALIASES.get(usage, usage)
    if name not in _KEY_USAGES and name not in _EXTENDED_USAGES:
        raise PKIError(f"unknown usage {usage!r}: use one of {', '.join(ALL_USAGES)}")
    return name


def _flag(key_usage: x509.KeyUsage, argument: str) -> bool:
    # cryptography refuses to read encipher_only/decipher_only unless key_agreement is set.
    if argument in ("encipher_only", "decipher_only") and not key_usage.key_agreement:
        return False
    return bool(getattr(key_usage, argument))
