"""The floor an issuance cannot beat, measured in the same run: (a) the crypto alone, (b) the API alone."""
from __future__ import annotations

import datetime as dt
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench import manifests, stats
from bench.kube import ControlPlane, CpuMeter, Request, run_requests
from certmint.controller import status as st
from certmint.issuance import Issued, issue_certificate, issued_secret
from certmint.kube.secrets import to_manifest
from certmint.model import parse_certificate_spec, renewal_time
from certmint.pki import load_ca
from certmint.policy import IssuerState

CA_ISSUER = "ca"


def ca_issuer(algorithm: str, now: dt.datetime) -> IssuerState:
    """A Ready CA issuer as the operator builds it from the CA Secret: a CA of the leaves' key algorithm."""
    self_signed = IssuerState(True, "IsReady", "Self-signed issuer is ready")
    ca = issue_certificate(parse_certificate_spec(manifests.ca_spec(algorithm)), self_signed, None, now)
    return IssuerState(True, "KeyPairVerified", "Signing CA verified", load_ca(ca.tls_crt, ca.key_pem, ca.ca_crt, now))


def sample_issuance(algorithm: str, i: int = 0) -> tuple[Issued, dt.datetime]:
    now = dt.datetime.now(dt.timezone.utc)
    spec = parse_certificate_spec(manifests.leaf_spec(i, algorithm, CA_ISSUER))
    return issue_certificate(spec, ca_issuer(algorithm, now), None, now), now


# --- (a) crypto alone ------------------------------------------------------------------------------

_worker: dict = {}


def _init_worker(algorithm: str, n: int) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    _worker.update(now=now, issuer=ca_issuer(algorithm, now),
                   specs=[parse_certificate_spec(manifests.leaf_spec(i, algorithm, CA_ISSUER)) for i in range(n)])


def _issue_one(i: int) -> int:
    issued = issue_certificate(_worker["specs"][i], _worker["issuer"], None, _worker["now"])
    return len(issued.tls_crt) + len(issued.key_pem)


def _warm(_: int) -> int:
    time.sleep(0.3)  # long enough for the pool to start both workers
    return 0


def crypto_floor(algorithm: str, n: int) -> dict[str, float]:
    """Key generation + signing (+ the PEM encodings an issuance needs) for n leaves, three ways:
    one thread, a pool of 2 threads (RSA key generation releases the GIL), and a pool of 2
    processes (both cores whatever the GIL does). The floor is the fastest of the three."""
    _init_worker(algorithm, n)
    out: dict[str, float] = {}

    started = time.perf_counter()
    for i in range(n):
        _issue_one(i)
    out["one_thread_seconds"] = time.perf_counter() - started

    with ThreadPoolExecutor(2) as pool:
        started = time.perf_counter()
        list(pool.map(_issue_one, range(n)))
        out["two_threads_seconds"] = time.perf_counter() - started

    context = multiprocessing.get_context("spawn")  # no fork of a process with threads
    with ProcessPoolExecutor(2, mp_context=context, initializer=_init_worker, initargs=(algorithm, n)) as pool:
        list(pool.map(_warm, range(2)))  # start-up and the workers' set-up are not crypto
        started = time.perf_counter()
        list(pool.map(_issue_one, range(n), chunksize=max(1, n // 32)))
        out["two_processes_seconds"] = time.perf_counter() - started

    out["seconds"] = min(out["one_thread_seconds"], out["two_threads_seconds"], out["two_processes_seconds"])
    return out


# --- (b) API alone ---------------------------------------------------------------------------------


def event(namespace: str, name: str, reason: str, message: str, action: str | None = None) -> dict:
    """A core/v1 Event on a Certificate, of the shape certmint.kube.resources.post_event sends."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = {"apiVersion": "v1", "kind": "Event", "metadata": {"generateName": f"{name}.", "namespace": namespace},
            "involvedObject": {"apiVersion": manifests.API_VERSION, "kind": "Certificate", "name": name,
                               "namespace": namespace},
            "reason": reason, "message": message, "type": "Normal", "source": {"component": "certmint"},
            "reportingComponent": "certmint.io/certmint", "reportingInstance": "bench",
            "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1}
    if action:
        body["action"] = action
    return body


PATTERNS = ("two_writes", "operator")


def issuance_requests(namespace: str, n: int, algorithm: str, pattern: str = "two_writes") -> list[list[Request]]:
    """Per Certificate the requests of one issuance, with the bodies the operator sends.

    two_writes: what an issuance needs: a server-side apply of the Secret, then a merge patch of
    the status. operator: what the operator sends today, in its order: an Issuing event, a GET
    of the Secret (which finds nothing), the apply, the status patch, an Issued event."""
    if pattern not in PATTERNS:
        raise ValueError(pattern)
    issued, now = sample_issuance(algorithm)
    not_before, not_after = issued.certificate.not_valid_before_utc, issued.certificate.not_valid_after_utc
    sequences = []
    for i in range(n):
        name = f"c{i}"
        spec = parse_certificate_spec(manifests.leaf_spec(i, algorithm, CA_ISSUER))
        secret = to_manifest(namespace, issued_secret(spec.secret_name, name, spec, issued, 1, None, None))
        status = st.issued_status({}, 1, now, not_before, not_after, renewal_time(not_before, not_after, spec), 1,
                                  "DoesNotExist")
        writes = [
            Request("PATCH", f"/api/v1/namespaces/{namespace}/secrets/{spec.secret_name}"
                    "?fieldManager=certmint-bench&force=true", secret, "application/apply-patch+yaml"),
            Request("PATCH", f"/apis/certmint.io/v1/namespaces/{namespace}/certificates/{name}/status"
                    "?fieldManager=certmint-bench", {"status": status}, "application/merge-patch+json"),
        ]
        if pattern == "operator":
            events = f"/api/v1/namespaces/{namespace}/events?fieldManager=certmint-bench"
            writes = [
                Request("POST", events, event(namespace, name, "Issuing", f"Issuing certificate as Secret "
                                              f"{spec.secret_name} does not exist", "DoesNotExist")),
                Request("GET", f"/api/v1/namespaces/{namespace}/secrets/{spec.secret_name}", also_ok=(404,)),
                *writes,
                Request("POST", events, event(namespace, name, "Issued", "The certificate has been successfully "
                                              f"issued (revision 1, serial {issued.certificate.serial_number:x})")),
            ]
        sequences.append(writes)
    return sequences


def _timed_pattern(cp: ControlPlane, namespace: str, algorithm: str, n: int, workdir: Path, concurrency: int,
                   pattern: str) -> tuple[float, float, dict[str, float]]:
    """(kubectl apply seconds, request seconds, CPU ms per issuance by process) in a fresh namespace
    of n Certificates. The CPU is the requests' alone: the API server's, etcd's and the client's."""
    cp.create_namespace(namespace)
    path = workdir / f"{namespace}.yaml"
    path.write_text(manifests.to_yaml(manifests.leaves(namespace, range(n), algorithm, CA_ISSUER)))
    apply_seconds = cp.apply_file(path)
    requests = issuance_requests(namespace, n, algorithm, pattern)
    meter = CpuMeter(cp.pids)
    seconds = run_requests(cp, requests, concurrency)
    used = meter.used()
    used["client"] = used.pop("bench")
    return apply_seconds, seconds, stats.ms_per_issuance(used, n)


def api_floor(cp: ControlPlane, namespace: str, algorithm: str, n: int, workdir: Path, concurrency: int,
              operator_workers: int | None = None) -> dict[str, Any]:
    """The two writes of n issuances by a tight asyncio client, for n Certificates created beforehand
    in a namespace no operator watches. The kubectl apply that creates them is timed too: it is
    what `kubectl apply` of n Certificates costs when nothing else is at work (floor c).

    With operator_workers, two more namespaces tell the operator's request pattern from its
    Python: the same two writes with only that many in flight, and the operator's five requests
    per issuance (see issuance_requests) with that many in flight."""
    apply_seconds, seconds, cpu = _timed_pattern(cp, namespace, algorithm, n, workdir, concurrency, "two_writes")
    out = {"seconds": seconds, "concurrency": concurrency, "requests": 2 * n, "kubectl_apply_seconds": apply_seconds,
           "cpu_ms_per_issuance": cpu}
    if operator_workers:
        out["operator_workers"] = operator_workers
        _, out["two_writes_at_operator_concurrency_seconds"], _ = _timed_pattern(
            cp, f"{namespace}-w", algorithm, n, workdir, operator_workers, "two_writes")
        _, out["operator_pattern_seconds"], _ = _timed_pattern(
            cp, f"{namespace}-p", algorithm, n, workdir, operator_workers, "operator")
    return out
