"""Lint certificates and CRLs with pkilint and zlint, two independent linters, and return what
they find at ERROR level (or worse) that is not on the allow-list below.

Both linters are the real tools: pkilint's `lint_pkix_cert` and `lint_crl` command lines (run
in this process through their console scripts' main()), and the zlint binary built by `make
tools` (hack/build-tools.sh). A missing linter raises LinterMissing: it never silently passes.

zlint runs the lints of the IETF profiles that govern every X.509 PKI (RFC 5280 and the
algorithm RFCs) and its community lints. It leaves out the CA/Browser Forum baseline
requirements, the root programs' policies (Apple, Chrome, Mozilla) and ETSI: those govern
publicly trusted certificates, and a private CA is not one (they would demand, e.g.,
certificate policies, a country and organization in every CA, and only DNS and IP SANs).
"""
from __future__ import annotations

import contextlib
import importlib
import io
import json
import re
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

import localcluster

# RFC 6960's one lint is about OCSP responses, and zlint's -includeSources does not accept its name.
ZLINT_SOURCES = ("RFC5280", "RFC3279", "RFC5480", "RFC5891", "RFC6962", "RFC8813", "Community")
_ZLINT_FAILING = {"error", "fatal"}
_PKILINT_FAILING = {"ERROR", "FATAL"}


class LinterMissing(RuntimeError):
    """A linter the suite depends on is not installed."""


@dataclass(frozen=True)
class Finding:
    linter: str  # "pkilint" or "zlint"
    code: str  # pkilint's finding code or zlint's lint name
    message: str
    where: str = ""  # pkilint's node path

    def __str__(self) -> str:
        return f"{self.linter} {self.code}: {self.message}" + (f" (at {self.where})" if self.where else "")


@dataclass(frozen=True)
class Allowance:
    """One exact linter mistake: the linter and code it raises, and a test of the finding's text."""

    linter: str
    code: str
    applies: Callable[[Finding], bool]


# A SPIFFE ID: spiffe://<trust domain>/<path>, as the SPIFFE ID specification defines them.
_SPIFFE_ID = re.compile(r"spiffe://[a-z0-9._-]+(/[A-Za-z0-9._-]+)*")
# A wildcard DNS name as RFC 6125 (6.4.3) and the CA/Browser Forum define them: "*" as the whole
# leftmost label of an otherwise valid name with at least two more labels.
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_WILDCARD_DNS = re.compile(rf"\*\.{_LABEL}(\.{_LABEL})+")

ALLOWED: tuple[Allowance, ...] = (
    # pkilint checks URIs with the `validators` package's url(), which accepts only web schemes
    # (http, https, ftp, ...), so it calls every spiffe:// URI in a SAN "invalid URI syntax".
    # RFC 3986 allows any scheme, and RFC 5280 any URI; SPIFFE IDs are the URI SANs of mTLS
    # workloads. Allowed exactly: this code, for a well-formed SPIFFE ID only.
    Allowance("pkilint", "pkix.invalid_uri_syntax",
              lambda f: (m := re.fullmatch(r'Invalid URI syntax: "(.*)"', f.message)) is not None
              and _SPIFFE_ID.fullmatch(m.group(1)) is not None),
    # pkilint's RFC 5280 profile checks a dNSName with `validators.domain`, which has no wildcard
    # form, so "*.example.com" is "invalid domain name syntax". RFC 5280 (4.2.1.6) leaves wildcard
    # semantics to other specifications, and RFC 6125 defines them; pkilint's own CA/Browser Forum
    # profile accepts them. Allowed exactly: this code, for a well-formed leftmost-label wildcard.
    Allowance("pkilint", "pkix.invalid_domain_name_syntax",
              lambda f: (m := re.fullmatch(r'Invalid domain name syntax: "(.*)"', f.message)) is not None
              and _WILDCARD_DNS.fullmatch(m.group(1)) is not None),
    # `validators.domain` also wants at least two labels, so "localhost" or a Kubernetes service's
    # short name ("api") is "invalid". RFC 5280 asks for RFC 1034's preferred name syntax, in
    # which one label is a complete name (<subdomain> ::= <label> | <subdomain> "." <label>).
    # Allowed exactly: this code, for a single well-formed label.
    Allowance("pkilint", "pkix.invalid_domain_name_syntax",
              lambda f: (m := re.fullmatch(r'Invalid domain name syntax: "(.*)"', f.message)) is not None
              and re.fullmatch(_LABEL, m.group(1)) is not None),
    # zlint reads RFC 5280 4.2.1.12 as "the key usage bits must be exactly one of the sets listed
    # for the extended key usage", and lists no set with keyEncipherment for clientAuth. RFC 5280
    # asks only that some purpose be consistent with both extensions; a TLS client certificate
    # with digitalSignature has one (it signs the handshake), whatever other bits it carries.
    # cert-manager's default usages plus client auth give exactly this. Allowed exactly: a
    # client-auth-only certificate whose key usage includes digitalSignature.
    Allowance("zlint", "e_key_usage_and_extended_key_usage_inconsistent",
              lambda f: (m := re.fullmatch(r"KeyUsage \[(.*)\] \([01]+\) inconsistent with ExtKeyUsage clientAuth",
                                           f.message)) is not None
              and "DigitalSignature" in m.group(1).split()),
)


def lint_certificate(certificate: x509.Certificate | bytes) -> list[Finding]:
    """ERROR (and FATAL) findings of pkilint's RFC 5280 certificate lint and zlint, allow-list applied.

    certificate is a parsed certificate, or one certificate in PEM or DER.
    """
    der = _der(certificate)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "certificate.der"
        path.write_bytes(der)
        findings = _pkilint(["lint_pkix_cert", "lint", "--document-format", "DER"], path)
        pem_path = Path(directory) / "certificate.pem"
        pem_path.write_bytes(x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM))
        findings += _zlint(pem_path)
    return _not_allowed(findings)


def lint_crl(crl: x509.CertificateRevocationList | bytes) -> list[Finding]:
    """ERROR (and FATAL) findings of pkilint's RFC 5280 (PKIX) CRL lint and zlint, allow-list applied."""
    parsed = crl if isinstance(crl, x509.CertificateRevocationList) else _load_crl(crl)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "list.der"
        path.write_bytes(parsed.public_bytes(serialization.Encoding.DER))
        findings = _pkilint(["lint_crl", "lint", "--type", "CRL", "--profile", "PKIX", "--document-format", "DER"], path)
        pem_path = Path(directory) / "list.pem"
        pem_path.write_bytes(parsed.public_bytes(serialization.Encoding.PEM))
        findings += _zlint(pem_path)
    return _not_allowed(findings)


def lint_certificates(certificates: dict[str, bytes]) -> dict[str, list[Finding]]:
    """lint_certificate for each named PEM bundle's every certificate; only names with findings are kept."""
    failures: dict[str, list[Finding]] = {}
    for name, pem in certificates.items():
        for index, certificate in enumerate(x509.load_pem_x509_certificates(pem)):
            findings = lint_certificate(certificate)
            if findings:
                failures[f"{name}[{index}] {certificate.subject.rfc4514_string()}"] = findings
    return failures


def zlint_binary() -> str:
    try:
        return localcluster.binary("zlint")
    except localcluster.ClusterError:
        raise LinterMissing("zlint is not installed: run `make tools` (hack/build-tools.sh zlint)") from None


def _pkilint_main(command: str) -> Callable[[list[str]], int]:
    """The main() behind pkilint's console script `command` (lint_pkix_cert, lint_crl)."""
    try:
        module = importlib.import_module(f"pkilint.bin.{command}")
    except ImportError:
        raise LinterMissing(f"pkilint ({command}) is not installed: install the test dependencies (make venv)") from None
    main: Callable[[list[str]], int] = module.main
    return main


def _der(certificate: x509.Certificate | bytes) -> bytes:
    if isinstance(certificate, x509.Certificate):
        return certificate.public_bytes(serialization.Encoding.DER)
    if certificate.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_certificate(certificate).public_bytes(serialization.Encoding.DER)
    return x509.load_der_x509_certificate(certificate).public_bytes(serialization.Encoding.DER)


def _load_crl(data: bytes) -> x509.CertificateRevocationList:
    if data.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_crl(data)
    return x509.load_der_x509_crl(data)


def _pkilint(command: list[str], path: Path) -> list[Finding]:
    """Run a pkilint command line: its console script's own main(), in this process (starting a
    Python per certificate would make linting every certificate of the suite slow)."""
    main = _pkilint_main(command[0])
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main([*command[1:], "--severity", "ERROR", "--format", "JSON", str(path)])
    try:
        report = json.loads(out.getvalue())
    except json.JSONDecodeError:
        raise AssertionError(f"{command[0]} did not report (exit {status}): {err.getvalue()[-2000:]}") from None
    return [
        Finding("pkilint", d["code"], d.get("message") or "", r.get("node_path", ""))
        for r in report["results"] for d in r["finding_descriptions"] if d["severity"] in _PKILINT_FAILING
    ]


def _zlint(pem_path: Path) -> list[Finding]:
    result = subprocess.run([zlint_binary(), "-includeSources", ",".join(ZLINT_SOURCES), str(pem_path)],
                            capture_output=True, text=True, timeout=120)
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"zlint did not report (exit {result.returncode}): {result.stderr[-2000:]}") from None
    if not report:
        raise AssertionError(f"zlint ran no lints on {pem_path.name}: {result.stderr[-2000:]}")
    return [Finding("zlint", name, outcome.get("details") or "")
            for name, outcome in sorted(report.items()) if outcome["result"] in _ZLINT_FAILING]


def _not_allowed(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings
            if not any(a.linter == f.linter and a.code == f.code and a.applies(f) for a in ALLOWED)]
