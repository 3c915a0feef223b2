"""`verify`: offline chain verification of PEM files, with no cluster, like `step certificate verify`.

Chains are built and checked by cryptography's verifier (the Web PKI rules of RFC 5280, as
rustls-webpki applies them); certmint only adds the checks it leaves to the caller: a purpose
without a host name, a host on a client certificate, and the CRL.
"""
from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import re
from pathlib import Path
from typing import Any

from certmint.cli.common import (
    CliError,
    UsageError,
    now,
    require_operator_extra,
    rfc3339,
)

SERVER, CLIENT = "server", "client"
_PROCESSING = re.compile(r"\s*\(encountered processing <Certificate\(subject=<Name\((.*?)\)>, \.\.\.\)>\)")


class VerifyError(CliError):
    """The certificate does not verify; the message says why, in one line."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("verify", help="verify a certificate chain offline (files, no cluster)",
                       description="Verify CERT (a PEM file: the leaf, optionally followed by intermediates, as in "
                                   "tls.crt) up to the roots in --roots (e.g. ca.crt). Exit 0 when it verifies, 1 "
                                   "with the reason when it does not.")
    p.add_argument("cert", metavar="CERT", help="PEM file: the leaf first, then any intermediates")
    p.add_argument("--roots", required=True, metavar="FILE", help="PEM file of trusted root certificates")
    p.add_argument("--intermediates", metavar="FILE", help="PEM file of further intermediate certificates")
    p.add_argument("--host", help="the DNS name the certificate must be valid for")
    p.add_argument("--ip", help="the IP address the certificate must be valid for")
    p.add_argument("--purpose", choices=(SERVER, CLIENT),
                   help="require the server auth or client auth extended key usage (when the certificate has any)")
    p.add_argument("--crl", metavar="FILE", help="CRL (PEM or DER) of the certificate's issuer: fail if it lists "
                                                "the certificate")
    p.set_defaults(handler=verify)


def verify(args: argparse.Namespace) -> int:
    require_operator_extra()
    if args.host and args.ip:
        raise UsageError("give --host or --ip, not both")
    ip = None
    if args.ip:
        try:
            ip = ipaddress.ip_address(args.ip)
        except ValueError:
            raise UsageError(f"--ip {args.ip!r} is not an IP address") from None
    chain = load_pem(args.cert, "CERT")
    intermediates = chain[1:] + (load_pem(args.intermediates, "--intermediates") if args.intermediates else [])
    roots = load_pem(args.roots, "--roots")
    reference = now()
    built = verify_chain(chain[0], intermediates, roots, reference, host=args.host, ip=ip, purpose=args.purpose)
    crl_text = ""
    if args.crl:
        crl = load_crl(args.crl)
        issuer = built[1] if len(built) > 1 else built[0]
        entry = check_crl(chain[0], issuer, crl, reference)
        if entry is not None:
            raise VerifyError(f"verification failed: serial {chain[0].serial_number:x} is revoked "
                              f"since {rfc3339(entry.revocation_date_utc)}{_reason_of(entry)}")
        crl_text = ", not on the CRL"
    path = " -> ".join(c.subject.rfc4514_string() or "(empty subject)" for c in built)
    scope = "".join([f" for {args.purpose} auth" if args.purpose else "",
                     f", valid for {args.host}" if args.host else "", f", valid for {ip}" if ip else ""])
    print(f"verified{scope}{crl_text}: {path}")
    return 0


def load_pem(path: str, label: str) -> list:
    from certmint.pki import PKIError, parse_certificates

    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise UsageError(f"{label}: cannot read {path}: {e.strerror}") from None
    try:
        return parse_certificates(data)
    except PKIError as e:
        raise UsageError(f"{label}: {path}: {e}") from None


def load_crl(path: str) -> Any:
    from cryptography import x509

    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise UsageError(f"--crl: cannot read {path}: {e.strerror}") from None
    for loader in (x509.load_pem_x509_crl, x509.load_der_x509_crl):
        try:
            return loader(data)
        except ValueError:
            continue
    raise UsageError(f"--crl: {path} is not a PEM or DER CRL")


def verify_chain(leaf: Any, intermediates: list, roots: list, reference: dt.datetime, host: str | None = None,
                 ip: Any = None, purpose: str | None = None) -> list:
    """The verified chain, leaf first and a root last; VerifyError with the reason otherwise."""
    from cryptography import x509
    from cryptography.x509 import verification as v

    if reference < leaf.not_valid_before_utc:
        raise VerifyError(f"verification failed: the certificate is not valid before "
                          f"{rfc3339(leaf.not_valid_before_utc)}")
    if reference > leaf.not_valid_after_utc:
        raise VerifyError(f"verification failed: the certificate expired at {rfc3339(leaf.not_valid_after_utc)}")
    builder = v.PolicyBuilder().store(v.Store(roots)).time(reference)
    subject = x509.DNSName(host) if host else x509.IPAddress(ip) if ip is not None else None
    try:
        if purpose == SERVER and subject is not None:  # the Web PKI server check: chain, name and EKU at once
            return builder.build_server_verifier(subject).verify(leaf, intermediates)
        if purpose == CLIENT:  # requires client auth when the certificate lists extended usages
            chain = builder.build_client_verifier().verify(leaf, intermediates).chain
        else:
            # The chain alone: the end-entity's extensions are checked below for what was asked.
            any_use = builder.extension_policies(ca_policy=v.ExtensionPolicy.webpki_defaults_ca(),
                                                 ee_policy=v.ExtensionPolicy.permit_all())
            chain = any_use.build_client_verifier().verify(leaf, intermediates).chain
    except v.VerificationError as e:
        if "required EKU not found" in str(e):
            _require_usage(leaf, f"{purpose} auth")  # says which usages the certificate has instead
        raise VerifyError(f"verification failed: {_readable(str(e))}") from None
    if purpose == SERVER:
        _require_usage(leaf, "server auth")
    if subject is not None:
        _require_name(leaf, host, ip)
    return chain


def _readable(message: str) -> str:
    message = message.removeprefix("validation failed: ")
    if "candidates exhausted" in message:
        return "no chain to the given roots (wrong roots, or an intermediate missing?)"
    return _PROCESSING.sub(lambda m: f" (at {m.group(1)})", message)


def _require_usage(leaf: Any, usage: str) -> None:
    from cryptography import x509

    from certmint.pki import describe

    try:
        leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except x509.ExtensionNotFound:
        return  # no extended usages: valid for any purpose (RFC 5280 4.2.1.12)
    usages = describe(leaf).usages
    if usage not in usages and "any" not in usages:
        raise VerifyError(f"verification failed: the certificate is not for {usage} (its usages: {', '.join(usages)})")


def _require_name(leaf: Any, host: str | None, ip: Any) -> None:
    from certmint.pki import describe

    d = describe(leaf)
    if ip is not None:
        if any(ipaddress.ip_address(a) == ip for a in d.ip_addresses):
            return
        raise VerifyError(f"verification failed: {ip} is not among the certificate's IP addresses "
                          f"({', '.join(d.ip_addresses) or 'none'})")
    assert host is not None
    if any(_dns_match(pattern, host) for pattern in d.dns_names):
        return
    raise VerifyError(f"verification failed: {host} is not among the certificate's DNS names "
                      f"({', '.join(d.dns_names) or 'none'})")


def _dns_match(pattern: str, host: str) -> bool:
    """RFC 6125: exact (case-insensitive), or a wildcard standing for exactly one left-most label."""
    pattern, host = pattern.lower().rstrip("."), host.lower().rstrip(".")
    if pattern.startswith("*."):
        head, _, rest = host.partition(".")
        return bool(head) and rest == pattern[2:]
    return pattern == host


def check_crl(leaf: Any, issuer: Any, crl: Any, reference: dt.datetime | None = None) -> Any:
    """The CRL's entry for the leaf (None when it is not listed), once the CRL is shown to be the
    issuer's and current; VerifyError when it is not."""
    if crl.issuer != issuer.subject:
        raise VerifyError(f"verification failed: the CRL is issued by {crl.issuer.rfc4514_string()}, not by the "
                          f"certificate's issuer {issuer.subject.rfc4514_string()}")
    if not crl.is_signature_valid(issuer.public_key()):
        raise VerifyError("verification failed: the CRL's signature does not verify with the issuer's key")
    next_update = crl.next_update_utc
    if next_update is not None and (reference or now()) > next_update:
        raise VerifyError(f"verification failed: the CRL is out of date (next update was due {rfc3339(next_update)})")
    return crl.get_revoked_certificate_by_serial_number(leaf.serial_number)


def _reason_of(entry: Any) -> str:
    from cryptography import x509

    try:
        return f" ({entry.extensions.get_extension_for_class(x509.CRLReason).value.reason.name})"
    except x509.ExtensionNotFound:
        return ""
