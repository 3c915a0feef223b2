"""`python -m bench --only stepca`: ECDSA certificates signed through a real step-ca.

Two figures from the same CA in the same run, so the machine's load affects both alike:
  - certmint: N certificates through certmint.external.stepca (a P-256 key, a CSR, a one-time
    token and a POST /1.0/sign each), from CONCURRENCY threads sharing one client;
  - the CA's own rate: N `step ca certificate --token` runs of the step CLI (which also makes a
    P-256 key, a CSR and the same POST), CONCURRENCY at a time, with the tokens signed by
    `step ca token` beforehand and left out of the timing.
The CLI pays a process start per certificate; it is the independent client step-ca ships
with, so "certmint / CLI" says whether certmint's client is ever the slower side.
"""
from __future__ import annotations

import datetime as dt
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from cryptography import x509

from certmint.external.stepca import StepCAClient
from certmint.pki.csr import build_csr
from certmint.pki.keys import generate_key
from certmint.pki.types import ECDSA, CertificateTemplate, KeySpec, Subject

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the step-ca fixture lives with the tests
import stepca as fixture  # noqa: E402

from bench.kube import cpu_seconds  # noqa: E402
from bench.report import Row  # noqa: E402

N = 200
QUICK_N = 50
CONCURRENCY = 4
DURATION = dt.timedelta(hours=24)


def _name(i: int, who: str) -> str:
    return f"{who}-{i}.example.test"


def _ca_figures(ca: fixture.StepCA, n: int, cpu_before: float) -> dict[str, Any]:
    assert ca.process is not None
    cpu = cpu_seconds(ca.process.pid) - cpu_before
    return {"ca_cpu_seconds": round(cpu, 3), "ca_cpu_ms_per_certificate": round(1000 * cpu / n, 2)}


def certmint_rate(ca: fixture.StepCA, n: int = N, concurrency: int = CONCURRENCY) -> dict[str, Any]:
    """n signings through one shared StepCAClient; the Ready check is done before the clock starts."""
    client = StepCAClient(ca.url, ca.root_pem, max_connections=concurrency)
    provisioner = client.check(ca.provisioner, ca.kid, ca.password)

    def one(i: int) -> int:
        key = generate_key(KeySpec(ECDSA, 256))
        name = _name(i, "certmint")
        csr = build_csr(CertificateTemplate(subject=Subject(common_name=name), dns_names=(name,)), key)
        return client.sign(provisioner, csr, not_after=DURATION).leaf.serial_number

    assert ca.process is not None
    cpu_before = cpu_seconds(ca.process.pid)
    started = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        serials = list(pool.map(one, range(n)))
    seconds = time.monotonic() - started
    client.close()
    return {"n": n, "concurrency": concurrency, "seconds": round(seconds, 3), "per_second": round(n / seconds, 1),
            "unique_serials": len(set(serials)), "connections": client.connections_opened,
            "requests": client.requests_sent, **_ca_figures(ca, n, cpu_before)}


def cli_rate(ca: fixture.StepCA, n: int = N, concurrency: int = CONCURRENCY) -> dict[str, Any]:
    """n `step ca certificate --token` runs against the same CA, tokens made beforehand."""
    key = ca.decrypted_provisioner_key()
    out = Path(tempfile.mkdtemp(dir=ca.directory, prefix="cli-"))
    common = ("--ca-url", ca.url, "--root", str(ca.root_path))

    def token(i: int) -> str:
        return ca.step("ca", "token", _name(i, "cli"), "--key", str(key), "--kid", ca.kid,
                       "--issuer", ca.provisioner, *common).stdout.strip()

    with ThreadPoolExecutor(concurrency) as pool:
        tokens = list(pool.map(token, range(n)))

    def certificate(i: int) -> None:
        ca.step("ca", "certificate", _name(i, "cli"), str(out / f"{i}.crt"), str(out / f"{i}.key"),
                "--token", tokens[i], "--kty", "EC", "--curve", "P-256", "--not-after", "24h", "--force", *common)

    assert ca.process is not None
    cpu_before = cpu_seconds(ca.process.pid)
    started = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(certificate, range(n)))
    seconds = time.monotonic() - started
    cpu = _ca_figures(ca, n, cpu_before)
    serials = {x509.load_pem_x509_certificate((out / f"{i}.crt").read_bytes()).serial_number for i in range(n)}
    return {"n": n, "concurrency": concurrency, "seconds": round(seconds, 3), "per_second": round(n / seconds, 1),
            "unique_serials": len(serials), **cpu}


def measure(directory: Path, n: int = N, runs: int = 1) -> dict[str, Any]:
    """Both rates from one fresh CA, `runs` times each (alternating); medians and every run."""
    ca = fixture.StepCA(directory)
    try:
        ca.start()
        runs_out = []
        for _ in range(runs):
            runs_out.append({"certmint": certmint_rate(ca, n), "cli": cli_rate(ca, n)})
    finally:
        ca.close()
    ours = statistics.median(r["certmint"]["per_second"] for r in runs_out)
    theirs = statistics.median(r["cli"]["per_second"] for r in runs_out)
    ca_ms = statistics.median(r["certmint"]["ca_cpu_ms_per_certificate"] for r in runs_out)
    return {"n": n, "concurrency": CONCURRENCY, "certmint_per_second": ours, "cli_per_second": theirs,
            "ratio": round(ours / theirs, 2), "ca_cpu_ms_per_certificate": ca_ms,
            # what one core of step-ca could sign if nothing else ran: its own ceiling
            "ca_one_core_per_second": round(1000 / ca_ms, 1) if ca_ms else None, "runs": runs_out}


def scenario(cfg: Any, workdir: Path) -> dict[str, Any]:
    """The bench scenario: builds step-ca and step when missing (cached like the control plane)."""
    from bench.kube import BenchError, progress

    if not all((fixture.BIN / b).exists() for b in ("step-ca", "step")):
        progress("building step-ca and step (hack/build-tools.sh step; first time only)")
        subprocess.run([str(REPO / "hack" / "build-tools.sh"), "step"], check=True)
    n = QUICK_N if getattr(cfg, "runs", 3) < 3 else N
    try:
        result = measure(workdir / "stepca", n=n, runs=getattr(cfg, "runs", 1))
    except (RuntimeError, subprocess.CalledProcessError) as e:
        raise BenchError(f"step-ca scenario: {e}") from e
    progress(f"stepca: {n} ECDSA certificates, {CONCURRENCY} at a time: certmint {result['certmint_per_second']}/s, "
             f"step CLI {result['cli_per_second']}/s (certmint / CLI = {result['ratio']}); step-ca spends "
             f"{result['ca_cpu_ms_per_certificate']} ms CPU per certificate")
    return result


ROWS = [
    Row("step-ca: certmint client, ECDSA certificates/s", ("stepca", "certmint_per_second"), "{:.1f}"),
    Row("step-ca: step CLI against the same CA, certificates/s", ("stepca", "cli_per_second"), "{:.1f}"),
    Row("step-ca: certmint / step CLI", ("stepca", "ratio"), "{:.2f}", ">= 1", lambda v: v >= 1),
    Row("step-ca: CA CPU per certificate (ms)", ("stepca", "ca_cpu_ms_per_certificate"), "{:.2f}"),
    Row("step-ca: one CA core's ceiling, certificates/s", ("stepca", "ca_one_core_per_second"), "{:.0f}"),
]
