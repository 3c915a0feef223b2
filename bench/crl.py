"""`python -m bench --only crl`: signing a CRL of 10,000 entries with each CA key type.

No cluster: this is the pure work the operator does for one CRL update of a busy issuer
(certmint.revocation.publish: sort the entries, build and sign the CRL, encode it as PEM for
the ConfigMap and DER for HTTP, and lay out the ConfigMap), and reading it back as the
ledger on the next reconcile (certmint.revocation.read_ledger, which parses every entry).
Each figure is the median of the runs; the target is the issue's: under a second to sign.
"""
from __future__ import annotations

import datetime as dt
import statistics
import time
from typing import Any

from bench.report import Row

N = 10_000
QUICK_N = 2_000
ALGORITHMS = ("RSA", "ECDSA", "Ed25519")
_KEYS = {"RSA": "rsa", "ECDSA": "ecdsa", "Ed25519": "ed25519"}


def _signer(algorithm: str, now: dt.datetime):
    from certmint.pki.keys import generate_key
    from certmint.pki.signing import CASigner, issue
    from certmint.pki.types import CertificateTemplate, KeySpec, Subject

    spec = KeySpec(algorithm, {"RSA": 2048, "ECDSA": 256}.get(algorithm), "PKCS8")
    key = generate_key(spec)
    template = CertificateTemplate(subject=Subject(common_name=f"bench {algorithm} CA"), is_ca=True, key=spec,
                                   usages=("cert sign", "crl sign", "digital signature"),
                                   duration=dt.timedelta(days=365))
    return CASigner(issue(template, key, None, now).certificate, key)


def measure(algorithm: str, n: int, runs: int) -> dict[str, Any]:
    from certmint.pki.crl import RevokedCertificate
    from certmint.pki.signing import random_serial
    from certmint.revocation import IssuerKey, Ledger, plan_crl, publish, read_ledger

    now = dt.datetime.now(dt.timezone.utc)
    signer = _signer(algorithm, now)
    entries = [RevokedCertificate(random_serial(), now - dt.timedelta(seconds=i), "keyCompromise",
                                  now + dt.timedelta(days=90)) for i in range(n)]
    issuer = IssuerKey("Issuer", "bench-ca", "bench")
    plan = plan_crl(Ledger(), entries, signer, dt.timedelta(hours=24), now)
    sign, read = [], []
    for _ in range(runs):
        started = time.perf_counter()
        publication = publish(signer, issuer, "bench", entries, plan)
        sign.append(time.perf_counter() - started)
        configmap = publication.configmap
        started = time.perf_counter()
        ledger = read_ledger(configmap["data"], configmap["metadata"]["annotations"])
        read.append(time.perf_counter() - started)
        if len(ledger.entries) != n:
            raise RuntimeError(f"{algorithm}: the ledger read back {len(ledger.entries)} entries, not {n}")
    return {"entries": n, "sign_seconds": statistics.median(sign), "read_seconds": statistics.median(read),
            "der_bytes": len(publication.der),
            "configmap_bytes": sum(len(v) for v in publication.configmap["data"].values())}


def scenario(cfg: Any, workdir: Any) -> dict[str, Any]:
    from bench.kube import progress

    runs = max(getattr(cfg, "runs", 3), 1)
    n = QUICK_N if runs < 3 else N
    out = {}
    for algorithm in ALGORITHMS:
        result = measure(algorithm, n, runs)
        progress(f"crl: {n:,} entries, {algorithm} CA: signed in {result['sign_seconds'] * 1000:.0f} ms, "
                 f"read back in {result['read_seconds'] * 1000:.0f} ms, ConfigMap {result['configmap_bytes']:,} bytes")
        out[_KEYS[algorithm]] = result
    return out


ROWS = [
    *(Row(f"CRL: sign {N:,} entries, {alg} CA (s)", ("crl", key, "sign_seconds"), "{:.3f}", "< 1",
          lambda v: v < 1) for alg, key in _KEYS.items()),
    *(Row(f"CRL: read {N:,} entries back as the ledger, {alg} CA (s)", ("crl", key, "read_seconds"), "{:.3f}")
      for alg, key in _KEYS.items()),
    Row(f"CRL: ConfigMap data for {N:,} entries (bytes)", ("crl", "ecdsa", "configmap_bytes"), "{:,.0f}",
        "< 1,032,192", lambda v: v < 1_032_192),
]
