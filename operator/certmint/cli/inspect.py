"""`inspect secret NAME` and `inspect FILE`: what a certificate says, whether its chain verifies, and
whether its issuer's CRL lists it. Reads tls.crt and ca.crt only: private key material is never
read, so it can never be printed."""
from __future__ import annotations

import argparse
import base64
import datetime as dt
from pathlib import Path
from typing import Any

from certmint.cli.common import (
    FAILED,
    CliError,
    Style,
    UsageError,
    api_error,
    connect,
    days_left,
    dump,
    kube_flags,
    now,
    output_flag,
    require_operator_extra,
    rfc3339,
)

KEY_USAGES = frozenset({"digital signature", "content commitment", "key encipherment", "key agreement",
                        "data encipherment", "cert sign", "crl sign", "encipher only", "decipher only"})
CRL_TIMEOUT = 5.0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="what a certificate Secret or PEM file holds",
                       usage="%(prog)s secret NAME [flags] | %(prog)s FILE [--ca FILE] [flags]",
                       description="Subject, SANs, usages, validity, serial, fingerprint, key, the chain in "
                                   "tls.crt, whether it verifies to ca.crt, and whether the issuer's CRL (when the "
                                   "certificate names one) lists it. Never prints private key material.")
    p.add_argument("target", nargs="+", metavar="secret NAME | FILE")
    p.add_argument("--ca", metavar="FILE", help="with FILE: the root(s) to verify the chain to")
    p.add_argument("--no-crl", action="store_true", help="do not fetch the CRL named in the certificate")
    kube_flags(p)
    output_flag(p, choices=("text", "json", "yaml"), default="text")
    p.set_defaults(handler=inspect)


def inspect(args: argparse.Namespace) -> int:
    require_operator_extra()
    from certmint.pki import PKIError, parse_certificates

    if len(args.target) == 2 and args.target[0] == "secret":
        if args.ca:
            raise UsageError("--ca is for files; a Secret's ca.crt is used")
        source, tls_crt, ca_crt = _read_secret(args, args.target[1])
    elif len(args.target) == 1:
        source, tls_crt, ca_crt = _read_file(args.target[0], args.ca)
    else:
        raise UsageError("inspect takes `secret NAME` or one FILE")
    try:
        chain = parse_certificates(tls_crt)
        roots = parse_certificates(ca_crt) if ca_crt else []
    except PKIError as e:
        raise CliError(f"{source}: {e}") from None
    report = inspection(source, chain, roots, fetch_crl=not args.no_crl)
    if args.output in ("json", "yaml"):
        print(dump(report, args.output), end="" if args.output == "yaml" else "\n")
    else:
        print(render(report, Style()))
    revoked = (report.get("crl") or {}).get("status") == "revoked"
    return FAILED if revoked else 0


def _read_secret(args: argparse.Namespace, name: str) -> tuple[str, bytes, bytes | None]:
    from certmint.kube.api import ApiError

    cluster = connect(args)
    try:
        secret = cluster.api.get(cluster.path("secrets", name, group=""))
    except ApiError as e:
        raise api_error(e, f"secret {name!r} in namespace {cluster.namespace!r}") from None
    data = secret.get("data") or {}
    if not data.get("tls.crt"):
        raise CliError(f"secret {name!r} in namespace {cluster.namespace!r} has no tls.crt")
    ca = base64.b64decode(data["ca.crt"]) if data.get("ca.crt") else None
    return f"secret {cluster.namespace}/{name}", base64.b64decode(data["tls.crt"]), ca


def _read_file(path: str, ca: str | None) -> tuple[str, bytes, bytes | None]:
    try:
        return path, Path(path).read_bytes(), Path(ca).read_bytes() if ca else None
    except OSError as e:
        raise CliError(f"cannot read {e.filename}: {e.strerror}") from None


def summary(certificate: Any) -> dict:
    """The few facts `status` shows about a Secret's certificate."""
    from certmint.pki import describe

    d = describe(certificate)
    return {"subject": d.subject_dn, "issuer": d.issuer_dn, "serial": f"{d.serial_number:x}",
            "notBefore": rfc3339(d.not_before), "notAfter": rfc3339(d.not_after),
            "daysLeft": days_left(d.not_after), "sans": sans(d)}


def sans(d: Any) -> list[str]:
    return ([f"DNS:{n}" for n in d.dns_names] + [f"IP:{n}" for n in d.ip_addresses]
            + [f"URI:{n}" for n in d.uris] + [f"email:{n}" for n in d.email_addresses])


def details(certificate: Any, reference: dt.datetime) -> dict:
    from cryptography.hazmat.primitives import hashes

    from certmint.pki import describe

    d = describe(certificate)
    return {
        "subject": d.subject_dn,
        "issuer": d.issuer_dn,
        "serial": f"{d.serial_number:x}",
        "sha256Fingerprint": certificate.fingerprint(hashes.SHA256()).hex(":").upper(),
        "notBefore": rfc3339(d.not_before),
        "notAfter": rfc3339(d.not_after),
        "daysLeft": days_left(d.not_after, reference),
        "isCA": d.is_ca,
        "key": f"{d.key_algorithm} {d.key_size}" if d.key_size else d.key_algorithm,
        "sans": sans(d),
        "keyUsages": [u for u in d.usages if u in KEY_USAGES],
        "extendedKeyUsages": [u for u in d.usages if u not in KEY_USAGES],
    }


def inspection(source: str, chain: list, roots: list, fetch_crl: bool = True,
               reference: dt.datetime | None = None) -> dict:
    """The report `inspect` prints: the leaf in detail, the chain, verification to the roots, the CRL."""
    from certmint.cli.verify import VerifyError, verify_chain

    reference = reference or now()
    report: dict[str, Any] = {"source": source, "certificate": details(chain[0], reference),
                              "chain": [{"subject": c.subject.rfc4514_string(), "issuer": c.issuer.rfc4514_string(),
                                         "notAfter": rfc3339(c.not_valid_after_utc)} for c in chain]}
    verified: list = []
    if roots:
        try:
            verified = verify_chain(chain[0], chain[1:], roots, reference)
            report["verifies"] = {"ok": True, "to": verified[-1].subject.rfc4514_string()}
        except VerifyError as e:
            report["verifies"] = {"ok": False, "reason": str(e).removeprefix("verification failed: ")}
    else:
        report["verifies"] = {"ok": None, "reason": "no ca.crt to verify against"}
    report["crl"] = crl_status(chain, verified, roots) if fetch_crl else {"status": "not checked"}
    return report


def crl_status(chain: list, verified: list, roots: list) -> dict:
    """Whether the CRL the certificate names lists its serial. Only a CRL whose signature checks
    against the issuer's key counts: an unsigned answer proves nothing."""
    from cryptography import x509

    from certmint.cli.verify import VerifyError, check_crl

    leaf = chain[0]
    try:
        points = leaf.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except x509.ExtensionNotFound:
        return {"status": "not published", "reason": "the certificate names no CRL distribution point"}
    urls = [n.value for p in points for n in (p.full_name or []) if isinstance(n, x509.UniformResourceIdentifier)]
    urls = [u for u in urls if u.startswith(("http://", "https://"))]
    if not urls:
        return {"status": "not published", "reason": "no http(s) CRL distribution point"}
    issuer = _issuer_of(leaf, verified, chain, roots)
    for url in urls:
        try:
            crl = _fetch_crl(url)
        except OSError as e:
            last = {"status": "unavailable", "url": url, "reason": str(getattr(e, "reason", e))}
            continue
        except ValueError as e:
            last = {"status": "unavailable", "url": url, "reason": str(e)}
            continue
        if issuer is None:
            return {"status": "unverified", "url": url, "reason": "the issuer's certificate is not at hand"}
        try:
            revoked = check_crl(leaf, issuer, crl)
        except VerifyError as e:  # a CRL that is not the issuer's proves nothing either way
            return {"status": "invalid CRL", "url": url, "reason": str(e)}
        except ValueError as e:
            last = {"status": "unavailable", "url": url, "reason": str(e)}
            continue
        return {"status": "not revoked" if revoked is None else "revoked", "url": url,
                "lastUpdate": rfc3339(crl.last_update_utc), "nextUpdate": rfc3339(crl.next_update_utc)}
    return last


def _issuer_of(leaf: Any, verified: list, chain: list, roots: list) -> Any:
    if len(verified) > 1:
        return verified[1]
    for candidate in [*chain[1:], *roots, leaf]:
        if candidate.subject == leaf.issuer:
            return candidate
    return None


def _fetch_crl(url: str) -> Any:
    import urllib.request

    from cryptography import x509

    with urllib.request.urlopen(url, timeout=CRL_TIMEOUT) as response:
        data = response.read(10 * 1024 * 1024)
    try:
        return x509.load_der_x509_crl(data)
    except ValueError:
        try:
            return x509.load_pem_x509_crl(data)
        except ValueError:
            raise ValueError(f"{url} does not serve a CRL") from None


def render(r: dict, style: Style) -> str:
    c = r["certificate"]
    left = c["daysLeft"]
    left_text = f"{left} days left" if left >= 0 else f"expired {-left} days ago"
    left_text = style.red(left_text) if left < 7 else style.yellow(left_text) if left < 30 else style.green(left_text)
    lines = [
        f"{style.bold('Certificate')} from {r['source']}",
        f"  Subject:              {c['subject'] or '(empty)'}",
        f"  Issuer:               {c['issuer']}",
        f"  Serial:               {c['serial']}",
        f"  SHA-256 fingerprint:  {c['sha256Fingerprint']}",
        f"  Not before:           {c['notBefore']}",
        f"  Not after:            {c['notAfter']} ({left_text})",
        f"  Key:                  {c['key']}",
        f"  CA:                   {'yes' if c['isCA'] else 'no'}",
        f"  SANs:                 {', '.join(c['sans']) or '(none)'}",
        f"  Key usages:           {', '.join(c['keyUsages']) or '(none)'}",
        f"  Extended key usages:  {', '.join(c['extendedKeyUsages']) or '(none)'}",
        "Chain (as held):",
    ]
    for i, link in enumerate(r["chain"]):
        lines.append(f"  {i}  {link['subject'] or '(empty subject)'}  (issuer {link['issuer']}, not after "
                     f"{link['notAfter']})")
    v = r["verifies"]
    if v["ok"] is True:
        lines.append(f"Verifies:               {style.green('yes')}, to {v['to']}")
    elif v["ok"] is False:
        lines.append(f"Verifies:               {style.red('no')}: {v['reason']}")
    else:
        lines.append(f"Verifies:               not checked ({v['reason']})")
    crl = r["crl"]
    state = crl["status"]
    shown = style.red(state.upper()) if state == "revoked" else style.green(state) if state == "not revoked" else state
    extra = "; ".join(x for x in (crl.get("url"), crl.get("reason")) if x)
    lines.append(f"Revocation (CRL):       {shown}" + (f" ({extra})" if extra else ""))
    return "\n".join(lines)
